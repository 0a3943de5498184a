"""The ``cycler`` driver and readers: the files commercial cyclers (Maccor, Neware, PEC, BDF, BioLogic, Arbin) write."""
