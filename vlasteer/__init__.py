"""Find concepts inside pi0 / pi0.5 policies and steer them."""
__version__ = "0.1.0"
