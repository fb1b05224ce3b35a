"""`dut`: real boards in the loop, over the MLPerf Tiny device-under-test serial protocol.

- protocol.py: the commands and answers (host side), every misbehaviour a `BoardFault`;
- transport.py: the serial port (pyserial);
- codec.py: the input buffer and the printed results;
- boards.py: the `[tool.tinyaccel.targets.dut]` settings and board tables;
- target.py: the target (lease a board, run the samples, time them, retry once);
- simboard.py: a simulated board on a pseudo-terminal (the firmware side).

Leases come from `pytest_tinyaccel.leases`. docs/boards.md documents it all.
"""
