# SPDX-License-Identifier: AGPL-3.0-only
"""Hub card fields kept in the manifest: model-index, widget, co2, gating."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mercato.errors import ModelCardError
from mercato.models.card import parse_card, render_card
from mercato.models.hub_fields import MAX_RESULTS
from mercato.models.manifest import manifest_schema

WHISPER_FRONT = """license: apache-2.0
pipeline_tag: automatic-speech-recognition
language: [en, fr]
datasets: [librispeech_asr]
base_model: openai/whisper-small
base_model_relation: quantized
co2_eq_emissions:
  emissions: 1234.5
  source: CodeCarbon
  training_type: fine-tuning
  hardware_used: 8 x A100
widget:
- example_title: Librispeech sample 1
  src: https://cdn.example.org/1.flac
- text: hello
extra_gated_prompt: You agree to not use the model to identify people.
extra_gated_fields:
  Company: text
  Country: country
  Use:
    type: select
    options: [Research, {label: Other, value: other}]
  I agree: checkbox
model-index:
- name: whisper-small-en
  results:
  - task: {type: automatic-speech-recognition, name: ASR}
    dataset: {name: LibriSpeech (clean), type: librispeech_asr, config: clean, split: test}
    metrics:
    - {type: wer, value: 3.4, name: Test WER, verified: false}
    - {type: cer, value: 1}
    source: {name: Open ASR Leaderboard, url: 'https://example.org/board'}
"""


def _parse(front: str) -> object:
    return parse_card(f"---\n{front}---\n# m\n")


def test_hub_fields_reach_the_manifest_without_floats() -> None:
    card = parse_card(f"---\n{WHISPER_FRONT}---\n# m\n")
    manifest = card.to_manifest()
    result = manifest["model-index"][0]["results"][0]
    assert result["metrics"][0] == {
        "type": "wer", "value": "3.4", "name": "Test WER", "verified": False
    }  # fmt: skip
    assert result["metrics"][1]["value"] == "1"
    assert result["dataset"]["split"] == "test"
    assert result["source"]["url"] == "https://example.org/board"
    assert manifest["co2_eq_emissions"]["emissions"] == "1234.5"
    assert manifest["widget"][0] == {
        "example_title": "Librispeech sample 1", "src": "https://cdn.example.org/1.flac"
    }  # fmt: skip
    fields = manifest["extra_gated_fields"]
    assert fields[2] == {"name": "Use", "type": "select", "options": ["Research", "Other"]}
    assert manifest["extra_gated_prompt"].startswith("You agree")
    assert manifest["base_model_relation"] == "quantized"
    assert "float" not in json.dumps(manifest)  # no float survives: canonical bytes stay stable
    card_schema = manifest_schema()["properties"]["card"]
    validator = jsonschema.Draft202012Validator(
        {**card_schema, "$defs": manifest_schema()["$defs"]}
    )
    assert list(validator.iter_errors(manifest)) == []
    assert not any(isinstance(v, float) for v in _walk(manifest))


def _walk(value: object) -> list[object]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _walk(v)]
    if isinstance(value, list):
        return [x for v in value for x in _walk(v)]
    return [value]


def test_render_card_round_trips_hub_fields() -> None:
    card = parse_card(f"---\n{WHISPER_FRONT}---\n# m\n")
    assert parse_card(render_card(card)) == card


def test_widget_entries_mercato_cannot_use_are_left_out() -> None:
    card = parse_card(
        "---\nlicense: mit\nwidget:\n- messages: [{role: user, content: hi}]\n"
        "- source_sentence: That is a happy person\n  sentences: [a, b]\n---\n"
    )
    assert card.widget == [{"text": "That is a happy person"}]


def test_co2_as_a_bare_number() -> None:
    card = parse_card("---\nlicense: mit\nco2_eq_emissions: 10\n---\n")
    assert card.co2_eq_emissions == {"emissions": "10"}


def test_a_huge_model_index_is_refused() -> None:
    results = "".join(
        f"  - task: {{type: t}}\n    dataset: {{name: d{i}}}\n"
        "    metrics: [{type: acc, value: 1}]\n"
        for i in range(MAX_RESULTS + 1)
    )
    with pytest.raises(ModelCardError) as info:
        parse_card(f"---\nlicense: mit\nmodel-index:\n- name: m\n  results:\n{results}---\n")
    assert "model-index" in str(info.value) and str(MAX_RESULTS) in str(info.value)


@pytest.mark.parametrize(
    ("front", "fragment"),
    [
        ("widget:\n- src: javascript:alert(1)\n", "src"),
        ("model-index:\n- results:\n  - metrics: [{type: acc, value: .nan}]\n", "finite"),
        ("model-index:\n- results:\n  - metrics: [{value: 1}]\n", "no 'type'"),
        ("model-index:\n- results:\n  - source: {url: 'javascript:x'}\n", "http(s)"),
        ("co2_eq_emissions: {source: x}\n", "emissions"),
        ("co2_eq_emissions: lots\n", "number"),
        ('extra_gated_prompt: "a\\u0000b"\n', "control"),
    ],
)
def test_malformed_hub_fields_are_refused(front: str, fragment: str) -> None:
    with pytest.raises(ModelCardError) as info:
        parse_card(f"---\nlicense: mit\n{front}---\n")
    assert fragment in str(info.value)
