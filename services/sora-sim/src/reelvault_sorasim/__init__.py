"""sora-sim"""
