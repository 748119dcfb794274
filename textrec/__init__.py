"""textrec: recommendation as language — P5, VQ-Rec, Rec-R1 and ERRA over one data and evaluation core."""

__version__ = "0.1.0"
