"""The CDNOW sample (Fader, Hardie and Lee 2005) as the papers read it: 2,357 customers, a
39-week calibration period to 1997-09-30, repeat purchases counted per distinct day, time in
weeks. Shared by the model's tests and the computation's."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

CDNOW = Path(__file__).resolve().parent / "data" / "CDNOW_sample.txt"
END = dt.date(1997, 9, 30)


def calibration_by_customer(end: dt.date = END) -> dict[str, tuple[int, float, float, float]]:
    """(x, t_x, T, m) per sample customer id, from the purchases up to `end`."""
    days: dict[str, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    for line in CDNOW.read_text().splitlines():
        _, customer, date, _, value = line.split()
        day = dt.datetime.strptime(date, "%Y%m%d").date()
        if day <= end:
            days[customer][day] += float(value)
    inputs = {}
    for customer, spend in days.items():
        dates = sorted(spend)
        x = len(dates) - 1
        m = sum(spend[d] for d in dates[1:]) / x if x else 0.0
        inputs[customer] = (x, (dates[-1] - dates[0]).days / 7, (end - dates[0]).days / 7, m)
    return inputs
