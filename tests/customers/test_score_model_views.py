"""The prediction model's page (`customers.views.scores.ScoreModelView`): the fit, the smart
segments' cut-offs and rule, the calibration/holdout check and its chart data, the empty
states, and the Scores page's link and status line."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from customers.models import ScoreSettings
from tests.customers.score_models import full_model, no_fit_model, store_model

pytestmark = pytest.mark.django_db
MODEL_URL = reverse("customers:score_model")


def test_the_model_page_shows_the_fit_cutoffs_and_holdout_check(staff_client, merchant):
    # given a merchant with a full model
    store_model(merchant, full_model())

    # when staff open the model page
    response = staff_client.get(MODEL_URL)
    html = response.content.decode()

    # then the parameters with their meanings, the fit's date (merchant-local) and size
    assert response.status_code == 200
    for text in ("0.2426", "4.4135", "0.7929", "2.4258", "-9,582.43", "6.2500", "15.4400"):
        assert text in html, text
    alpha = "\N{GREEK SMALL LETTER ALPHA}"
    assert f"r/{alpha} = 0.055 times a week on average, about every 18 weeks" in html
    assert "a/(a+b) = 24.6% on average" in html
    assert "p\N{MIDDLE DOT}\N{GREEK SMALL LETTER GAMMA}/(q\N{MINUS SIGN}1) = 35.22 CAD" in html
    assert '<span id="fit-as-of">2026-12-04 21:00</span>' in html  # 03:00+01:00 in Toronto
    assert '<span id="fit-customers">2,357</span>' in html
    assert '<span id="fit-repeat-customers">946</span>' in html
    # the smart segments' cut-offs and rule in the merchant's numbers
    assert "107 days" in html
    assert "141.40 CAD" in html
    assert "2,280.77 CAD" in html
    assert "One order, more than 107 days ago" in html
    assert "P(alive) below 0.2" in html
    # the holdout check: chart data, the weekly table (latest first) and the totals
    chart = response.context["chart"]
    assert chart == {
        "labels": ["2026-08-24", "2026-08-31", "2026-09-07", "2026-09-14", "2026-09-21"],
        "actual": [400, 410, 420, 404, 410],
        "expected": [390.25, 401.0, 405.5, 400.0, 395.0],
        "holdout": [False, False, True, True, True],
    }
    assert '<canvas id="holdout-chart"' in html
    assert '<script id="holdout-data" type="application/json">' in html
    assert "js/score-model-chart.js" in html
    weeks = html[html.index('id="holdout-weeks"') :]
    assert weeks.index("2026-09-21") < weeks.index("2026-08-24")
    assert weeks.count('class="table-secondary holdout-week"') == 3
    assert "orders up to 2026-09-06 only" in html
    assert "Over the 3 holdout weeks: <strong>1,234</strong> repeat orders seen" in html
    assert "<strong>1,200.5</strong> expected (-2.7%)" in html
    assert f"r 0.2500, {alpha} 4.6000, a 0.8000, b 2.5000, on 2,100 customers" in html


def test_the_model_page_says_why_there_is_no_fit(staff_client, merchant):
    # given a merchant with too little data for a fit
    store_model(merchant, no_fit_model())

    # when staff open the model page
    response = staff_client.get(MODEL_URL)
    html = response.content.decode()

    # then the reason, the cut-offs and the fallback rule, and no parameters or chart
    assert response.status_code == 200
    assert "<strong>No predictions:</strong> fewer than 50 customers with an order (12)." in html
    assert "Last computed as of" in html
    assert 'id="bgnbd-params"' not in html
    assert 'id="gamma-gamma-params"' not in html
    assert "107 days" in html
    assert "No order for more than 4 of their own gaps between orders" in html
    assert "No holdout check: fewer than 26 weeks of orders." in html
    assert "<canvas" not in html
    assert "chart.umd.min.js" not in html


def test_before_any_computation_the_model_page_says_so(staff_client, merchant):
    # given a merchant never computed
    # when staff open the model page
    response = staff_client.get(MODEL_URL)
    html = response.content.decode()

    # then it says what fills it, and shows the default cut-offs
    assert response.status_code == 200
    assert 'id="model-empty"' in html
    assert "Nothing computed yet" in html
    assert "90 days" in html
    assert 'id="holdout"' not in html
    assert not ScoreSettings.objects.filter(merchant=merchant).exists()  # a read writes nothing


def test_a_sampled_holdout_check_says_so(staff_client, merchant):
    # given a check made on one customer in 12
    model = full_model()
    model["holdout"]["sample_every"] = 12
    store_model(merchant, model)

    # then the page says the counts are a sample's; without a sample it says nothing
    html = staff_client.get(MODEL_URL).content.decode()
    assert "one customer in 12 (by customer id)" in html
    store_model(merchant, full_model())
    assert 'id="holdout-sample"' not in staff_client.get(MODEL_URL).content.decode()


def test_a_model_without_a_holdout_check_says_so(staff_client, merchant):
    store_model(merchant, full_model(holdout=None))

    html = staff_client.get(MODEL_URL).content.decode()

    assert "The last computation made no holdout check." in html
    assert "<canvas" not in html


def test_the_model_page_shows_its_own_merchants_model_only(staff_client, merchant, other_merchant):
    # given another merchant with a fit, and ours never computed
    store_model(other_merchant, full_model())

    # when staff open the model page
    html = staff_client.get(MODEL_URL).content.decode()

    # then none of the other merchant's figures show
    assert "Nothing computed yet" in html
    for text in ("0.2426", "2,357", "141.40", "holdout-chart"):
        assert text not in html, text


def test_a_malformed_model_is_shown_as_far_as_it_reads_never_a_server_error(staff_client, merchant):
    # given a model JSON edited by hand (or from an older computation)
    store_model(
        merchant,
        {
            "as_of": "yesterday",
            "bgnbd": {"r": "many", "alpha": 0, "a": None},
            "gamma_gamma": {"p": 1.0, "q": 0.5},
            "cutoffs": {"one_time_days": 120},
            "holdout": {"rows": [{"week_start": "soon", "actual": 1}, "x"], "weeks": 2},
        },
    )

    # when staff open the model page
    response = staff_client.get(MODEL_URL)

    # then the page shows what it can read
    assert response.status_code == 200
    html = response.content.decode()
    assert "120 days" in html
    assert "Too few weeks to draw." in html


@pytest.mark.parametrize(
    ("model", "status"),
    [
        ({}, "not computed yet"),
        (full_model(), "fitted on 2,357 customers with an order"),
        (no_fit_model(), "none: fewer than 50 customers with an order (12)"),
    ],
)
def test_the_scores_page_links_the_model_page_and_says_how_it_stands(
    staff_client, merchant, model, status
):
    # given the merchant's last fit (or none)
    store_model(merchant, model)

    # when staff open the Scores page
    html = staff_client.get(reverse("customers:scores")).content.decode()

    # then
    assert f'href="{MODEL_URL}" id="model-link"' in html
    line = html[html.index('id="model-status"') :]
    assert status in line[: line.index("</div>")]


def test_the_chart_data_is_json_the_script_can_read(staff_client, merchant):
    # given a full model
    store_model(merchant, full_model())

    # when the page is rendered
    html = staff_client.get(MODEL_URL).content.decode()

    # then the json_script holds the chart's series (the script parses it, no inline code)
    start = html.index('<script id="holdout-data" type="application/json">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    assert json.loads(body)["holdout"] == [False, False, True, True, True]
