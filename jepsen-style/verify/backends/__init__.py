"""Backends: where the nodes run and how faults are made (``local``, ``netns``); see :mod:`.base`."""
