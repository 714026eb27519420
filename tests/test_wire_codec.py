"""The 8-bit wire (``--pipeline.model.remote.int8``, on top of sparse): per-ray scales, the error bound and the
bytes it claims, refusal of malformed 8-bit buffers, and on loopback the error feedback carrying each step's
residual of the *defended* gradient (the quantiser sees nothing but what the defense let out)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.transport.client import RemoteOptions
from s2nerf_ns.transport.wire import WireError, decode, encode
from conftest import tiny_model
from helpers import train_model
from test_two_process import ServerProcess, free_port

pytestmark = pytest.mark.timeout(400)


def test_int8_round_trip_error_bound_and_bytes():
    g = torch.Generator().manual_seed(0)
    h = torch.relu(torch.randn(6, 4, 8, generator=g)) * torch.logspace(-3, 1, 6)[:, None, None]  # rays of all scales
    h[2] = 0  # a ray with nothing left after the ReLU
    grad = torch.randn(6, 4, 8, generator=g) * 1e-8  # gradient-sized: float32 scales, no underflow
    frame, sizes = encode("forward_reply", 1, tensors={"h": h, "sample_bins": torch.rand(6, 5)},
                          codecs={"h": "sparse"}, int8=True)
    msg = decode(frame, "forward_reply")
    kept = int((h != 0).sum())
    assert sizes["h"] == (h.numel() + 7) // 8 + 4 * 6 + kept  # bitmask, a float32 scale per ray, a byte a value
    row_max = h.reshape(6, -1).amax(1)[:, None, None]
    assert ((msg.tensors["h"] - h).abs() <= row_max / 255 / 2 * 1.0001).all()  # half a level of its own ray
    assert (msg.tensors["h"][h == 0] == 0).all() and (msg.tensors["h"] >= 0).all()

    mask = h != 0
    frame, sizes = encode("backward", 1, tensors={"grad_h": grad}, codecs={"grad_h": "masked"}, masks={"grad_h": mask},
                          int8=True)
    back = decode(frame, "backward", masks={"grad_h": mask}).tensors["grad_h"]
    assert sizes["grad_h"] == 4 * 6 + kept
    row_max = (grad * mask).abs().reshape(6, -1).amax(1)[:, None, None]
    assert ((back - grad * mask).abs() <= row_max / 127 / 2 * 1.0001 + 1e-30).all()
    assert back[mask].abs().max() > 0 and (back[~mask] == 0).all()
    assert float((back - grad * mask).abs().max()) > 0  # it is lossy


def test_malformed_int8_buffers_are_refused():
    h = torch.relu(torch.randn(3, 2, 4))
    frame, _ = encode("forward_reply", 1, tensors={"h": h}, codecs={"h": "sparse"}, int8=True)
    header_len = int.from_bytes(frame[5:9], "little")
    header = json.loads(frame[9:9 + header_len])
    body = frame[9 + header_len:]

    def reframe(entry_changes, new_body):
        entry = {**header["tensors"][0], **entry_changes, "nbytes": len(new_body)}
        text = json.dumps({**header, "tensors": [entry]}).encode()
        return frame[:5] + len(text).to_bytes(4, "little") + text + new_body

    mask_len = (h.numel() + 7) // 8
    nan_scale = body[:mask_len] + np.array([np.nan, 1, 1], "<f4").tobytes() + body[mask_len + 12:]
    for changes, new_body, match in (({}, body[:-1], "8-bit values"), ({"bits": 4}, body, "bits"),
                                     ({"unsigned": "yes"}, body, "bits/unsigned"), ({}, nan_scale, "row scales")):
        with pytest.raises(WireError, match=match):
            decode(reframe(changes, new_body), "forward_reply")
    assert torch.allclose(decode(reframe({}, body), "forward_reply").tensors["h"], h, atol=float(h.max()) / 255)


def test_int8_with_error_feedback_on_loopback_quantises_only_the_defended_gradient(tmp_path):
    token = tmp_path / "token"
    token.write_text("codec-token\n")
    proc = ServerProcess(tmp_path / "server", token, free_port()).start()  # checkpoints by time: frames kept
    try:
        defense = DefenseConfig(kind="s2nerf")
        reference = tiny_model(defense=defense)
        remote = tiny_model(server_address=proc.address, server_token_file=token, defense=defense,
                            remote=RemoteOptions(insecure=True, int8=True, error_feedback=True))
        remote.client_head.load_state_dict(reference.client_head.state_dict())  # the same client initialisation
        sent = []  # what the channel hands over: the defended gradient, and the h it belongs to
        remote.channel.add_observer(lambda v: sent.append((v.h.detach().clone(), v.grad.detach().clone())))
        masks = {}  # h's non-zeros as the server sent them (the bitmask; 8-bit h may round a few to 0)
        ref_losses, _ = train_model(reference, 6)
        losses, _ = train_model(remote, 6, during=lambda step: masks.update(remote.server._h_mask))
        assert losses != ref_losses and losses == pytest.approx(ref_losses, rel=0.05, abs=1e-3)
        residual = torch.zeros_like(sent[0][1])
        for step, (h, grad) in enumerate(sent):
            mask = masks[step]
            assert (h[~mask] == 0).all()
            frame = remote.server.frames[step]["backward"]
            on_wire = decode(frame, "backward", masks={"grad_h": mask})
            # the client's 8-bit gradient is the defended one plus the last residual, quantised: nothing else
            carried = (grad + residual) * mask
            row_max = carried.abs().reshape(len(h), -1).amax(1)[:, None, None]
            assert ((on_wire.tensors["grad_h"] - carried).abs() <= row_max / 127 / 2 * 1.0001 + 1e-30).all()
            residual = (grad + residual - on_wire.tensors["grad_h"]) * mask
            assert on_wire.payload_bytes["grad_h"] == 4 * len(h) + int(mask.sum())
        assert torch.equal(remote.server._residual, residual)  # carried into the next step
        assert float(residual.abs().max()) > 0
        log = remote.server.wire_log[-1]
        assert log["received"]["h"] == (h.numel() + 7) // 8 + 4 * len(h) + int(mask.sum())
    finally:
        proc.kill()
