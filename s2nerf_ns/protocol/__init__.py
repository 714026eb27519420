"""The split itself: where the NeRF is cut, what runs on each side, and the one channel between them.

- SERVER: :mod:`~s2nerf_ns.protocol.server` (hash grid + first density layers -> ``h``);
- CLIENT: :mod:`~s2nerf_ns.protocol.client` (the rest of the MLP) and :mod:`~s2nerf_ns.protocol.rendering`
  (volume rendering, shared with the attacker's surrogate, which copies the head's public architecture);
- BOUNDARY: :mod:`~s2nerf_ns.protocol.channel` (every crossing, the defense hook, observers) and
  :mod:`~s2nerf_ns.protocol.transcript`;
- :mod:`~s2nerf_ns.protocol.cut`: the density MLP and where it is cut.
"""
