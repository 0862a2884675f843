"""archiver"""
