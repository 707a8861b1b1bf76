"""Operations: health probes and metrics, the terminal and its progress, memory,
stable group-member ids, batch isolation, and `streamfit status`."""
