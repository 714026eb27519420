"""SERVER SIDE (attacker): the pose of a leaked photo, estimated from what the server has (its fields, the
attacker's surrogate, the training poses it was sent, the photo's pixels and intrinsics); never the true pose.

- ``camera``: pose maths (pixel rays, orientations, pose corrections, pose errors);
- ``views``: render functions, renders at poses, the photo at an image level;
- ``retrieval``: retrieval over the training poses and iNeRF refinement;
- ``config``: the global searches' knobs and results;
- ``candidates``: candidate positions, panoramas, distinct candidates, the local random search;
- ``objectives``: how the colour search compares a render with the photo;
- ``colour_search``: the global search through the surrogate's colours or features (``search_pose``);
- ``structure``, ``geometry_search``, ``pnp``: the global search through the server's geometry.
"""
