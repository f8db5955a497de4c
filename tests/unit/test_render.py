"""Message variables (actors/automation/render.py): ticketz's variable list, tokens kept when unknown,
no HTML escaping, custom fields, and the greeting by the company's zone — with a fixed `now`."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.automation.render import BUILT_INS, greeting, render, variables

SP = ZoneInfo("America/Sao_Paulo")
NOW = datetime(2026, 3, 2, 17, 5, 9, tzinfo=UTC)  # 14:05:09 in São Paulo, a Monday


def values(**overrides: object) -> dict[str, str]:
    arguments: dict = {
        "contact_name": "Maria da Silva",
        "contact_email": "maria@example.com",
        "contact_number": "5511999990000",
        "custom_fields": {"CPF": "123.456.789-00", "Data de nascimento": "01/02/1990"},
        "ticket_id": 42,
        "queue": "Vendas",
        "user": "Ana",
        "now": NOW,
        "zone": SP,
    }
    arguments.update(overrides)
    return variables(**arguments)


def test_every_variable_of_ticketz() -> None:
    text = render(
        "{{greeting}} {{firstname}} ({{name}}, {{email}}) — protocolo {{protocol}}, ticket {{ticket}}, "
        "fila {{queue}}, atendente {{user}}, {{time}}",
        values(),
    )
    assert text == (
        "Boa tarde Maria (Maria da Silva, maria@example.com) — protocolo 20260302-42, ticket 42, "
        "fila Vendas, atendente Ana, 14:05:09"
    )


def test_ticketz_aliases() -> None:
    assert render("{{gretting}}|{{ms}}|{{hora}}|{{fila}}|{{usuario}}", values()) == (
        "Boa tarde|Boa tarde|14:05:09|Vendas|Ana"
    )
    assert set(values()) >= BUILT_INS


def test_custom_fields_by_name_with_spaces_and_case() -> None:
    assert render("CPF {{CPF}}, nascido em {{ Data de nascimento }}", values()) == (
        "CPF 123.456.789-00, nascido em 01/02/1990"
    )
    assert render("{{cpf}}", values()) == "123.456.789-00"  # one key matches regardless of case


def test_a_custom_field_never_overrides_a_built_in() -> None:
    fields = {"name": "Impostor", "Email": "x@y", "TICKET": "0", "plano": "Ouro"}
    result = values(custom_fields=fields, contact_email="")
    assert result["name"] == "Maria da Silva"
    assert "Email" not in result and "TICKET" not in result
    assert render("{{name}} {{plano}} {{email}} {{Email}}", result) == "Maria da Silva Ouro {{email}} {{Email}}"


def test_unknown_and_missing_values_keep_their_token_exactly() -> None:
    result = values(contact_email="", ticket_id=None, queue="", user="")
    template = "{{ email }}/{{protocol}}/{{ticket}}/{{queue}}/{{fila}}/{{user}}/{{nada}}/{{ Nada  }}"
    assert render(template, result) == template
    assert (
        render("{{#vip}}VIP{{/vip}} {{! nota }} {{> parcial}}", result)
        == "{{#vip}}VIP{{/vip}} {{! nota }} {{> parcial}}"
    )


def test_the_name_falls_back_to_the_number_and_firstname_is_its_first_word() -> None:
    assert render("{{name}}/{{firstname}}", values(contact_name="  João   Pedro ")) == "João   Pedro/João"
    assert render("{{name}}/{{firstname}}", values(contact_name="")) == "5511999990000/5511999990000"
    assert render("{{name}}/{{firstname}}", values(contact_name="", contact_number="")) == "{{name}}/{{firstname}}"


def test_no_html_escaping() -> None:
    result = values(contact_name="Tom & Jerry <b>\"'/`=", queue="P&D")
    assert render("{{name}} em {{queue}}", result) == "Tom & Jerry <b>\"'/`= em P&D"
    assert render("{{{name}}} {{&queue}} {{& queue }}", result) == "Tom & Jerry <b>\"'/`= P&D P&D"
    assert render("a & b < c {{x}}", {"x": "<&>"}) == "a & b < c <&>"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{name", "{{name"),
        ("name}}", "name}}"),
        ("{{", "{{"),
        ("}}{{", "}}{{"),
        ("{{}}", "{{}}"),
        ("{{ }}", "{{ }}"),
        ("{{{name}}", "{Maria"),
        ("{{name}}}", "Maria}"),
        ("{{{{name}}}}", "{Maria}"),
        ("{{na{me}}", "{{na{me}}"),
        ("{{name}}{{name}}", "MariaMaria"),
        ("", ""),
    ],
)
def test_odd_templates_never_raise(template: str, expected: str) -> None:
    assert render(template, {"name": "Maria"}) == expected


def test_odd_arguments_never_raise() -> None:
    assert render(None, {"name": "x"}) == ""  # type: ignore[arg-type]
    assert render("{{n}}", {"n": 5}) == "5"  # type: ignore[dict-item]
    assert render("{{a}}", {"a": "{{b}}", "b": "no"}) == "{{b}}"  # a value is not rendered again
    assert render("{{Cpf}}", {"cpf": "1", "CPF": "2"}) == "{{Cpf}}"  # ambiguous in case: kept
    assert render("{{CPF}}", {"cpf": "1", "CPF": "2"}) == "2"  # exact match first


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (datetime(2026, 3, 2, 2, 59, 59, tzinfo=UTC), "Boa noite"),  # 23:59:59 on Sunday in São Paulo
        (datetime(2026, 3, 2, 3, 0, tzinfo=UTC), "Olá"),  # 00:00 local (ticketz: hours 0-5)
        (datetime(2026, 3, 2, 8, 59, 59, tzinfo=UTC), "Olá"),  # 05:59:59 local
        (datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "Bom dia"),  # 06:00 local
        (datetime(2026, 3, 2, 14, 59, 59, tzinfo=UTC), "Bom dia"),  # 11:59:59 local
        (datetime(2026, 3, 2, 15, 0, tzinfo=UTC), "Boa tarde"),  # 12:00 local
        (datetime(2026, 3, 2, 20, 59, 59, tzinfo=UTC), "Boa tarde"),  # 17:59:59 local
        (datetime(2026, 3, 2, 21, 0, tzinfo=UTC), "Boa noite"),  # 18:00 local
    ],
)
def test_greeting_boundaries_in_the_companys_zone(instant: datetime, expected: str) -> None:
    assert values(now=instant)["greeting"] == expected


def test_greeting_languages() -> None:
    local = datetime(2026, 3, 2, 9, 0, tzinfo=SP)
    assert greeting(local) == "Bom dia"
    assert greeting(local, "en") == "Good morning"
    assert greeting(local, "pt-BR") == "Bom dia"
    assert greeting(local, "es_ES") == "Buenos días"
    assert greeting(local, "xx") == "Bom dia"
    assert values(language="en")["greeting"] == "Good afternoon"


def test_protocol_and_time_use_the_companys_date_and_clock() -> None:
    late = datetime(2026, 3, 1, 1, 30, 0, tzinfo=UTC)  # still 2026-02-28 22:30 in São Paulo
    result = values(now=late, ticket_id=7)
    assert result["protocol"] == "20260228-7"
    assert result["time"] == "22:30:00"
    assert result["ticket"] == "7"
    assert values(protocol="ABC-1")["protocol"] == "ABC-1"  # the caller's own wins
    tokyo = values(now=late, zone=ZoneInfo("Asia/Tokyo"))
    assert tokyo["time"] == "10:30:00" and tokyo["protocol"] == "20260301-42"


@given(st.lists(st.sampled_from([*"{} &<>ab#/!=\n", "{{", "}}", "{{{", "}}}", "{{a}}", "{{ Z Z }}"])).map("".join))
def test_property_without_matching_keys_the_text_is_unchanged(template: str) -> None:
    assert render(template, {}) == template
    assert render(template, {"zz": "X", "Z": "Y"}) == template
    assert isinstance(render(template, {"a": "A", "b": "B"}), str)
