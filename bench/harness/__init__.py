"""What the bench scripts share (bench/README.md): each script is its measurement only.

- ``run``: printing, errors, waiting with a deadline, percentiles, the main wrapper.
- ``stack``: servers, a database and key prefix of the bench's own, the services as real
  processes (tests/support's processes), ready when every API process listens.
- ``wrk``: wrk runs with the scripts in bench/wrk/, and their results.
- ``cpu``: where a phase's CPU went, per process.
- ``baseline``: plain aiohttp apps measured in the same run, for ratios.
"""
