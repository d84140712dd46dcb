"""Thin Ray entry points: tune.py (the main job), train.py, evaluate.py."""
