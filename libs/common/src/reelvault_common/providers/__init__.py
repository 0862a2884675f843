"""Clients of the video providers' HTTP APIs and the rules of what they accept."""
