"""The pure decision modules of automation (DESIGN.md §7b): business hours, message variables, the queue
menu, assignment, flows and bot policy.

Nothing here does I/O or reads the clock: each function takes the state, the input and `now` as
arguments and returns values (a decision, the actions to run). The actors in `actors/` run them and
carry out what they decide, so every rule here is unit tested with fixed inputs.
"""
