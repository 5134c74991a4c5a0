"""A local stand-in for Arize's side: the log API (and, later, the experiment runner).

Never imported by `app/`: it plays the caller, the way Arize's coordinator would.
"""
