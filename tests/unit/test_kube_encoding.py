"""Request bodies carry every character as itself, so the API server's YAML decoder accepts them."""

from __future__ import annotations

import json

import yaml

from paddle_kuscia.adapters.kube import encode_body
from paddle_kuscia.builders.knative import Owner, build_knative_service
from paddle_kuscia.models.paddleservice import PaddleServiceSpec

EMOJI = "\U0001f600"  # outside the Basic Multilingual Plane: json.dumps escapes it as a surrogate pair


def _knative_service() -> dict:
    spec = PaddleServiceSpec.model_validate(
        {
            "default": {
                "containerImage": "img",
                "tag": "v1",
                "port": 9292,
                "arg": f"echo {EMOJI} 我爱北京天安门",
            }
        }
    )
    owner = Owner("ps", "ns", "uid-1", {"team": "ml"})
    return build_knative_service(owner, spec)[0]


def test_characters_outside_the_bmp_are_sent_as_utf8_not_surrogate_escapes() -> None:
    ksvc = _knative_service()
    body = encode_body(ksvc)
    assert EMOJI.encode("utf-8") in body
    assert "我爱北京天安门".encode() in body
    assert b"\\ud83d" not in body
    assert json.loads(body) == ksvc


def test_the_apply_body_round_trips_through_a_yaml_parser() -> None:
    """Server-side apply bodies (application/apply-patch+yaml) are decoded as YAML."""
    ksvc = _knative_service()
    assert yaml.safe_load(encode_body(ksvc)) == ksvc
    # What the default json.dumps sent before: a YAML parser reads the escapes as two lone surrogates.
    assert yaml.safe_load(json.dumps(ksvc)) != ksvc
