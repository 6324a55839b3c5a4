"""The analysis room: recordings and studies after the fact.

study reads a BIDS study into tables, mixed_model fits them, checks says how far a result can
be trusted, study_analysis runs all of it and study_report writes it up (with figures). offline runs
the live loop over a recording as fast as it computes; replay plays one back over LSL.
"""
