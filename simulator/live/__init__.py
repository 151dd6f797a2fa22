"""Live shoppers: the world `make data` generated, sending sessions to the running service and reacting.

`world_store` persists the world at generation time and loads it back; `session` draws sessions and
their outcomes from the one generative model (`simulator.traffic`); `client` talks to `/rank` over
loopback HTTP; `landing` appends what happened to the raw zone and the oracle; `cli` is the command.
"""
