"""The settings catalogue (storage/settings.py) is consistent with itself and with ticketz's lists."""

from __future__ import annotations

from api.schedules import known_zone
from storage import settings

KINDS = {"choice", "count", "queue", "text", "color", "file", "links", "language", "timezone"}
# ticketz's GetSettingService.safeSettingsKeys and GetPublicSettingService.publicSettingsKeys
TICKETZ_SAFE = {"groupsTab", "CheckMsgIsGroup", "soundGroupNotifications", "tagsMode"}
TICKETZ_PUBLIC = {"allowSignup", "primaryColorLight", "primaryColorDark", "appLogoLight", "appLogoDark",
                  "appLogoFavicon", "appName", "loginPageLinks", "loginSidePanelImage", "loginBackgroundContent",
                  "vapidPublicKey", "extensionDownloadUrl"}


def test_every_default_is_a_value_its_key_accepts() -> None:
    for key, spec in settings.SPECS.items():
        assert spec.kind in KINDS, key
        assert (spec.kind == "choice") == bool(spec.choices), key
        if spec.choices:
            assert spec.default in spec.choices, key
        if spec.kind in ("count", "queue"):
            assert spec.default.isdigit(), key
        if spec.kind == "timezone":
            assert known_zone(spec.default), key
        assert len(spec.default) <= spec.max_len, key


def test_scopes_do_not_overlap_and_match_ticketz() -> None:
    assert not set(settings.COMPANY_SPECS) & set(settings.PLATFORM_SPECS)
    assert settings.DEFAULTS == {k: s.default for k, s in settings.COMPANY_SPECS.items()}
    assert {k for k, s in settings.SPECS.items() if s.safe} == TICKETZ_SAFE
    assert settings.PUBLIC_KEYS == TICKETZ_PUBLIC
    assert settings.PUBLIC_KEYS - {"vapidPublicKey"} <= set(settings.PLATFORM_SPECS)  # no tenant's value is public
    assert not any(settings.SPECS[k].secret for k in settings.PUBLIC_KEYS if k in settings.SPECS)
    assert settings.SUPER_ONLY <= set(settings.COMPANY_SPECS)
