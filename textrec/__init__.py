"""textrec: recommendation as language — P5, VQ-Rec, Rec-R1 and ERRA over one data and evaluation core."""

from textrec._version import __version__


def load(path):
    """Open any saved textrec artifact (recommender, explainer, query writer) from its folder."""
    from textrec.artifact import load_artifact

    return load_artifact(path)


__all__ = ["__version__", "load"]
