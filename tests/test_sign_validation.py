"""The sign body's compiled validation: whatever it accepts, marshmallow's schema accepts
alike and loads the same; whatever it is not sure of goes to the schema."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from petition_api.schemas import CompiledLoad, SignatureFormSchema, SignatureSchema

SCHEMA = SignatureSchema()
COMPILED = CompiledLoad(SCHEMA)

# Per field, values it allows (some near its edges), and values it refuses.
VALID: dict[str, list[Any]] = {
    "name": ["Amal Haddad", "  José  ", "Jose\u0301", "李", "O'Brien-Smith", "x" * 120],
    "email": ["amal@example.org", " AMAL@Example.org ", "a+tag@sub.example.org"],
    "country": ["SY", "sy", " fr "],
    "postal_code": ["75001", "sw1a 1aa", "", "  ", None],
    "source": ["bench", "ngo_1-x", "", None],
    "consent_updates": [True, False],
    "language": ["fr", "ar-SY", "", None],
    "website": ["", "  "],
}
INVALID: dict[str, list[Any]] = {
    "name": ["=cmd", "", "x" * 121, "a\u202eb", "1", "see http://x.org", None],
    "email": ["not-an-email", "a@", "", None],
    "country": ["XX", "S", "SYR", "", None],
    "postal_code": ["!!", "x" * 17],
    "source": ["Bench", "a" * 65],
    "consent_updates": ["true", 1, None],
    "language": ["zz-zz-zz-zz-zz", "1"],
    "website": ["http://bot.example", "x" * 501, None],
}
OTHER_KINDS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12))
REQUIRED = ("name", "email", "country")


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body, then none, one or two of its fields removed or spoilt (an unknown
    field among them)."""
    valid = {name: st.sampled_from(values) for name, values in VALID.items()}
    body: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {name: valid[name] for name in REQUIRED},
            optional={name: valid[name] for name in VALID if name not in REQUIRED},
        )
    )
    for name in draw(st.lists(st.sampled_from([*VALID, "unknown"]), max_size=2)):
        if draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = draw(st.one_of(st.sampled_from(INVALID.get(name, [1])), OTHER_KINDS))
    return body


@settings(max_examples=2000, deadline=None)
@given(bodies())
def test_what_the_compiled_load_accepts_the_schema_loads_the_same(body: dict[str, Any]) -> None:
    compiled = COMPILED.plainly_valid(dict(body))
    try:
        expected = SCHEMA.load(dict(body))
    except ValidationError:
        assert compiled is None, body
    else:
        assert compiled is None or compiled == expected, body


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"},
        {
            "name": " Jose\u0301 ",
            "email": " AMAL@Example.org ",
            "country": "fr",
            "postal_code": "sw1a 1aa",
            "source": "ngo_1",
            "consent_updates": True,
            "language": "ar-SY",
            "website": "",
        },
        {"name": "李", "email": "li@example.org", "country": "cn", "postal_code": "", "source": ""},
    ],
)
def test_a_plainly_valid_body_is_loaded_without_marshmallow(body: dict[str, Any]) -> None:
    assert COMPILED.plainly_valid(dict(body)) == SCHEMA.load(dict(body))


def test_an_invalid_body_gets_the_schema_s_own_errors() -> None:
    with pytest.raises(ValidationError) as raised:
        COMPILED.load({"name": "", "email": "nope", "country": "SY", "extra": 1})
    assert set(raised.value.messages) == {"name", "email", "extra"}


def test_a_field_kind_it_does_not_know_is_refused_when_compiled() -> None:
    with pytest.raises(TypeError, match="consent_updates"):
        CompiledLoad(SignatureFormSchema())
