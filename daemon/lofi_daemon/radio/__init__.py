"""The endless radio: a session that generates window after window through the one worker and streams them
into the player (session.py), walking a section plan (plans.py) and following the editor's energy (energy.py)."""
