"""Time zones Backtrader 1.9.78 can use, from whatever users pass.

Backtrader expects pytz-style zones: it calls ``tz.localize(naive)`` and, for anything without that
method, tries to monkey-patch one on (``utils.date.Localizer``) — which raises on ``zoneinfo.ZoneInfo``
and ``datetime.timezone`` because their instances are immutable. pandas 3 hands out ``ZoneInfo`` for
``df.index.tz``, so that crash is one keystroke away. :func:`backtrader_tz` wraps any ``tzinfo`` in a
small delegating zone that has ``localize``; pytz zones pass through untouched.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import InvalidInputError

#: Backtrader's own alias (``CST`` means US Central, not China Standard Time).
_ALIASES = {"CST": "CST6CDT"}


class LocalizingTZ(tzinfo):
    """A ``tzinfo`` that delegates to another one and adds pytz's ``localize(naive)``.

    ``localize`` attaches the zone with ``replace`` — correct for ``ZoneInfo`` (it resolves the offset
    from the wall time and ``fold``), unlike doing the same with a pytz zone.
    """

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone

    def __repr__(self) -> str:
        return f"LocalizingTZ({self.zone!r})"

    def __str__(self) -> str:
        return str(getattr(self.zone, "key", self.zone))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalizingTZ) and other.zone == self.zone

    def __hash__(self) -> int:
        return hash(self.zone)

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalizingTZ, (self.zone,))

    def _inner(self, dt: datetime | None) -> datetime | None:
        return None if dt is None else dt.replace(tzinfo=self.zone)

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return self.zone.utcoffset(self._inner(dt))

    def dst(self, dt: datetime | None) -> timedelta | None:
        return self.zone.dst(self._inner(dt))

    def tzname(self, dt: datetime | None) -> str | None:
        return self.zone.tzname(self._inner(dt))

    def fromutc(self, dt: datetime) -> datetime:
        return self.zone.fromutc(dt.replace(tzinfo=self.zone)).replace(tzinfo=self)

    def localize(self, dt: datetime, is_dst: bool | None = False) -> datetime:
        """Attach this zone to a naive wall-clock datetime (pytz's signature; ``is_dst`` → ``fold``).

        An aware datetime is converted instead (pytz would raise; converting is what callers mean)."""
        if dt.tzinfo is not None:
            return dt.astimezone(self)
        return dt.replace(tzinfo=self, fold=0 if is_dst or is_dst is None else 1)


def zone_from(tz: Any) -> tzinfo | None:
    """A plain ``tzinfo`` for a zone name, ``tzinfo`` or wrapped zone (``None`` passes through)."""
    if tz is None:
        return None
    if isinstance(tz, LocalizingTZ):
        return tz.zone
    if isinstance(tz, str):
        name = _ALIASES.get(tz.strip(), tz.strip())
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInputError(f"Unknown time zone {tz!r}; use an IANA name like 'America/New_York'") from None
    if isinstance(tz, tzinfo):
        return tz
    raise InvalidInputError(f"Invalid tz {tz!r}: use a zone name, a zoneinfo.ZoneInfo or a tzinfo")


def backtrader_tz(tz: Any) -> tzinfo | None:
    """A zone Backtrader can use for its ``tz`` parameter: ``None``, a pytz zone, or a :class:`LocalizingTZ`."""
    if tz is None or (hasattr(tz, "localize") and isinstance(tz, tzinfo)):
        return tz  # pytz zones and our own wrapper
    return LocalizingTZ(zone_from(tz))  # type: ignore[arg-type]
