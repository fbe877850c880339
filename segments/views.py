"""Segment pages: list, builder (create/edit, live count and funnel), detail (why in/out,
refresh now, manual members) and the "Segments and why" partial of the customer page.

Thin: reads come from `segments.selectors`, rule evaluation from `segments.engine`, writes
from `segments.services`. Tenancy: every object is looked up inside the current merchant's
rows (`selectors.segment_queryset(merchant=...)`), so another merchant's ids answer 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from customers.models import Merchant
from customers.tenancy import MerchantRequiredMixin, current_merchant
from segments import builder, engine, selectors, services, tasks
from segments.forms import MemberAddForm, MemberUploadForm, SegmentSettingsForm
from segments.models import Segment, SegmentKind
from segments.templates_catalog import TEMPLATES, find_template, template_key

MEMBERS_PER_PAGE = 100
SAVED_MESSAGE = 'Segment "{name}" saved.'
REFRESH_QUEUED_MESSAGE = "Refresh queued."
NO_SUCH_CUSTOMER_ERROR = 'No customer with external id "{external_id}".'


def _segment(request: HttpRequest, pk: int) -> Segment:
    return get_object_or_404(selectors.segment_queryset(merchant=current_merchant(request)), pk=pk)


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


# -- list -----------------------------------------------------------------------------------


class SegmentListView(MerchantRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        return render(
            request,
            "segments/segment_list.html",
            {
                "segments": selectors.segment_list(merchant=merchant),
                "templates": [(template_key(t), t) for t in TEMPLATES],
            },
        )


# -- builder --------------------------------------------------------------------------------


@dataclass
class BuilderState:
    """The rule tree after a post's widgets and edit, and what validation says of it."""

    tree: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    paste_error: str = ""
    paste_errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def _validate(tree: dict[str, Any], merchant: Merchant, segment: Segment | None) -> list[str]:
    try:
        engine.validate_rules(builder.clean_for_save(tree), merchant=merchant, segment=segment)
    except engine.RuleValidationError as exc:
        return exc.errors
    return []


def _state_from_post(data: QueryDict, merchant: Merchant, segment: Segment | None) -> BuilderState:
    tree = builder.apply_widgets(builder.load_tree(data.get("rules_json")), data)
    action = data.get("action", "")
    paste_error, paste_errors = "", []
    if action == "paste":
        pasted, paste_error = builder.parse_pasted(data.get("paste_json", ""))
        if pasted is not None:
            paste_errors = _validate(pasted, merchant, segment)
            if not paste_errors:
                tree = pasted
    elif action:
        tree = builder.apply_action(tree, action)
    return BuilderState(
        tree=tree,
        errors=_validate(tree, merchant, segment),
        paste_error=paste_error,
        paste_errors=paste_errors,
    )


def _editor_context(
    state: BuilderState, merchant: Merchant, segment: Segment | None
) -> dict[str, Any]:
    by_node, general = builder.errors_by_node(state.tree, state.errors)
    return {
        "root": builder.editor_nodes(
            state.tree,
            options=selectors.builder_options(merchant=merchant, segment=segment),
            errors=by_node,
        ),
        "fields": builder.field_catalogue(),
        "rules_json": builder.pretty(state.tree),
        "saved_json": builder.pretty(builder.clean_for_save(state.tree)),
        "general_errors": general,
        "state": state,
        "editor_url": _builder_url("segments:builder_editor", segment),
        "preview_url": _builder_url("segments:builder_preview", segment),
    }


def _builder_url(name: str, segment: Segment | None) -> str:
    if segment is None:
        return reverse(name)
    return reverse(name + "_segment", args=[segment.pk])


def _preview_context(state: BuilderState, merchant: Merchant) -> dict[str, Any]:
    if not state.valid:
        return {"errors": state.errors}
    rules = builder.clean_for_save(state.tree)
    count, steps = engine.count_with_funnel(merchant=merchant, rules=rules)
    return {
        "count": count,
        "steps": steps,
        "total": selectors.customer_queryset(merchant=merchant).count(),
    }


class SegmentBuilderView(MerchantRequiredMixin, View):
    """Create (/segments/new/) or edit (/segments/<pk>/edit/) a dynamic segment."""

    template_name = "segments/builder.html"

    def _segment(self, request: HttpRequest, pk: int | None) -> Segment | None:
        if pk is None:
            return None
        return get_object_or_404(
            selectors.segment_queryset(merchant=current_merchant(request)).filter(
                kind=SegmentKind.DYNAMIC
            ),
            pk=pk,
        )

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        segment = self._segment(request, pk)
        if segment is not None:
            form = SegmentSettingsForm(initial=SegmentSettingsForm.initial_for(segment))
            tree = segment.rules or builder.empty_tree()
        else:
            template = find_template(request.GET.get("template", ""))
            initial: dict[str, Any] = {}
            tree = builder.empty_tree()
            if template is not None:
                initial = {"name": template["name"], "description": template["description"]}
                tree = template["rules"]
            form = SegmentSettingsForm(initial=initial)
        state = BuilderState(tree=tree, errors=_validate(tree, merchant, segment))
        return self._render(request, form, state, segment)

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        segment = self._segment(request, pk)
        form = SegmentSettingsForm(request.POST)
        if segment is not None:
            form.fields["slug"].disabled = True
            form.fields["slug"].initial = segment.slug
        state = _state_from_post(request.POST, merchant, segment)
        if form.is_valid() and state.valid:
            rules = builder.clean_for_save(state.tree)
            data = dict(form.cleaned_data)
            slug = data.pop("slug")
            try:
                if segment is None:
                    segment = services.segment_create(
                        merchant=merchant,
                        kind=SegmentKind.DYNAMIC,
                        slug=slug or None,
                        rules=rules,
                        created_by=request.user,
                        **data,
                    )
                else:
                    segment = services.segment_update(
                        segment=segment, user=request.user, rules=rules, **data
                    )
            except engine.RuleValidationError as exc:
                state.errors = exc.errors
            except ValidationError as exc:
                for name, errors in exc.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                messages.success(request, SAVED_MESSAGE.format(name=segment.name))
                return redirect("segments:detail", pk=segment.pk)
        return self._render(request, form, state, segment, status=400)

    def _render(
        self,
        request: HttpRequest,
        form: SegmentSettingsForm,
        state: BuilderState,
        segment: Segment | None,
        status: int = 200,
    ) -> HttpResponse:
        merchant = current_merchant(request)
        if segment is not None:
            form.fields["slug"].disabled = True
            form.fields["slug"].help_text = "The slug stays as it is."
        context = {
            "form": form,
            "segment": segment,
            "posted": request.method == "POST",
            "templates": [(template_key(t), t) for t in TEMPLATES],
            **_editor_context(state, merchant, segment),
            **_preview_context(state, merchant),
        }
        return render(request, self.template_name, context, status=status)


class BuilderEditorView(MerchantRequiredMixin, View):
    """htmx: apply the posted widgets and edit to the tree, answer the editor partial."""

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk) if pk is not None else None
        state = _state_from_post(request.POST, merchant, segment)
        response = render(
            request, "segments/partials/editor.html", _editor_context(state, merchant, segment)
        )
        # The live count reloads after the editor has applied the edit (same tree).
        response["HX-Trigger"] = "rules-changed"
        return response


class BuilderPreviewView(MerchantRequiredMixin, View):
    """htmx: the live count and funnel of the posted tree (or its errors)."""

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk) if pk is not None else None
        data = request.POST.copy()
        data.pop("action", None)  # the editor applies edits; the count reads the widgets
        state = _state_from_post(data, merchant, segment)
        return render(request, "segments/partials/preview.html", _preview_context(state, merchant))


# -- detail ---------------------------------------------------------------------------------


class SegmentDetailView(MerchantRequiredMixin, View):
    """Definition, freshness, members, "why in, why out" (?customer=<external id>)."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk)
        context: dict[str, Any] = {
            "segment": segment,
            "members": Paginator(
                selectors.segment_members(segment=segment), MEMBERS_PER_PAGE
            ).get_page(request.GET.get("page")),
            "add_form": MemberAddForm(),
            "upload_form": MemberUploadForm(),
        }
        if segment.is_dynamic and segment.rules:
            context["sentence"] = engine.describe(segment.rules)
            context["rules_json"] = builder.pretty(segment.rules)
        external_id = request.GET.get("customer", "").strip()
        if external_id and segment.is_dynamic and segment.rules:
            context["explain_query"] = external_id
            customer = selectors.merchant_customer(merchant=merchant, external_id=external_id)
            if customer is None:
                context["explain_error"] = NO_SUCH_CUSTOMER_ERROR.format(external_id=external_id)
            else:
                context["explained"] = customer
                context["explain"] = engine.explain(
                    merchant=merchant, rules=segment.rules, customer=customer
                )
        template = (
            "segments/partials/explain.html"
            if _is_htmx(request) and "customer" in request.GET
            else "segments/segment_detail.html"
        )
        return render(request, template, context)


class SegmentRefreshView(MerchantRequiredMixin, View):
    """POST: enqueue a full refresh on commit (runs in-process without a broker)."""

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = _segment(request, pk)
        segment_id = segment.pk
        transaction.on_commit(lambda: tasks.refresh_segment.delay(segment_id))
        messages.info(request, REFRESH_QUEUED_MESSAGE)
        return redirect("segments:detail", pk=segment_id)


class MemberAddView(MerchantRequiredMixin, View):
    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk)
        form = MemberAddForm(request.POST)
        if form.is_valid():
            external_id = form.cleaned_data["external_id"]
            customer = selectors.merchant_customer(merchant=merchant, external_id=external_id)
            if customer is None:
                messages.error(request, NO_SUCH_CUSTOMER_ERROR.format(external_id=external_id))
            else:
                _member_write(request, services.segment_members_add, segment, [customer.pk])
        return redirect("segments:detail", pk=segment.pk)


class MemberRemoveView(MerchantRequiredMixin, View):
    def post(self, request: HttpRequest, pk: int, customer_pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk)
        customer = get_object_or_404(selectors.customer_queryset(merchant=merchant), pk=customer_pk)
        _member_write(request, services.segment_members_remove, segment, [customer.pk])
        return redirect("segments:detail", pk=segment.pk)


def _member_write(request: HttpRequest, service: Any, segment: Segment, ids: list[int]) -> None:
    try:
        change = service(segment=segment, customers=ids, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return
    messages.success(request, f"{len(change.entered)} added, {len(change.exited)} removed.")


class MemberUploadView(MerchantRequiredMixin, View):
    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = _segment(request, pk)
        form = MemberUploadForm(request.POST, request.FILES)
        if not form.is_valid():
            messages.error(request, "Choose a CSV file to upload.")
            return redirect("segments:detail", pk=segment.pk)
        try:
            change = services.segment_members_upload(
                segment=segment, file=form.cleaned_data["file"], user=request.user
            )
        except services.MembershipUploadError as exc:
            for error in exc.errors:
                messages.error(request, error)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, f"Uploaded: {len(change.entered)} added, {len(change.exited)} removed."
            )
        return redirect("segments:detail", pk=segment.pk)


# -- the customer page's "Segments and why" -------------------------------------------------


class CustomerSegmentsView(MerchantRequiredMixin, View):
    """Partial: the customer's current segments, and for each active dynamic segment whether
    the customer matches now, with the per-condition explanation."""

    def get(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        customer = get_object_or_404(selectors.customer_queryset(merchant=merchant), pk=customer_pk)
        evaluations = []
        for segment in selectors.active_dynamic_segments(merchant=merchant):
            if not segment.rules:
                continue
            results = engine.explain(merchant=merchant, rules=segment.rules, customer=customer)
            evaluations.append((segment, results[0].matched, results))
        return render(
            request,
            "segments/partials/customer_segments.html",
            {
                "customer": customer,
                "memberships": selectors.customer_segments(customer=customer),
                "evaluations": evaluations,
            },
        )
