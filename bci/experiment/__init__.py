"""The experiment room: one participant through a protocol (`bandmate session run`).

experiment_protocol (blocks and their order) -> session_config (the plan) -> session_runner,
which shows the participant_page, plays session_music, and writes the recorder's crash-safe
recording, exported by bids_export once the session is over. Runs the live room's loop;
imports nothing from bci.analysis.
"""
