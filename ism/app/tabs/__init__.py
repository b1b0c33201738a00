"""The app, tab by tab: each module lays out one tab's widgets, wires its events and owns its words
(attack, compare, lesson, curves, how); ``page`` holds what they share. app.py builds them in order."""
