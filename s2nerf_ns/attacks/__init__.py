"""SERVER SIDE: what a curious server can reconstruct. Every attacker here is fed only what the server holds:
the channel's :class:`~s2nerf_ns.protocol.channel.ServerView`, its own fields, the client head's public
architecture, and (scene-aided) leaked photos. Scoring against ground truth lives in :mod:`s2nerf_ns.evaluation`.
"""
