"""provider-sim"""
