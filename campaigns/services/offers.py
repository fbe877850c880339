"""Writes of offers and content blocks: create and change them with their targeting, switch
them on and off, fill an offer's pool of unique codes (generated or uploaded) and hand the
codes out. Keyword-only, typed, each in one transaction: a refused write leaves nothing.

Validation raises `ValidationError` with a dict keyed by the field the message is about
(`name`, `valid_until`, `shared_code`, `code_mode`, `include`, `exclude`, `codes`, ...), so
a form can put each message next to its field; the targeting's own rules (the segment is the
merchant's, an included one is active) are `Targeting.clean()`'s.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import (
    CodeMode,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Offer,
    OfferKind,
    OfferSegment,
)
from customers.models import Customer, Merchant
from segments.models import Segment
from segments.services.common import user_or_none

if TYPE_CHECKING:
    from segments.services.common import Actor

logger = logging.getLogger(__name__)
T = TypeVar("T", Offer, ContentBlock)

NOT_UNIQUE_CODES = 'The offer "{offer}" has no pool of unique codes.'
NO_CODE_LEFT = 'Every code of the offer "{offer}" is taken: upload or generate more.'
OTHER_MERCHANT = 'The customer {customer} is not a customer of the offer "{offer}"\'s merchant.'
NOT_THE_MERCHANTS = "This {what} belongs to another merchant."

NAME_TAKEN = 'There is already an offer named "{name}": choose another name.'
NAME_REQUIRED = "Give it a name."
TITLE_REQUIRED = "Give it a title."
DATES_REVERSED = "The last day cannot be before the first day ({first})."
SHARED_CODE_REQUIRED = "Enter the code everyone gets, or choose another code mode."
SHARED_CODE_SPACES = "A code has no spaces."
CODES_GIVEN_KEEP_MODE = (
    "{count} codes of this offer's pool are given to customers: it keeps its pool of unique "
    "codes (switch the offer off instead)."
)
NO_INCLUDED_SEGMENT = "Choose at least one segment to aim it at."
INCLUDED_AND_EXCLUDED = "{segments}: a segment cannot be both aimed at and kept from."

CODE_COUNT_RANGE = "Generate from 1 to {most:,} codes at a time."
CODE_LENGTH_RANGE = "A generated code has {least} to {most} characters (besides the prefix)."
CODE_PREFIX_INVALID = (
    "A prefix has at most {most} letters, digits, dashes (-) or underscores (_), no spaces."
)
CODE_TOO_LONG_WITH_PREFIX = "The prefix and the code together are longer than {most} characters."
CODE_SPACE_EXHAUSTED = "Could not find {count:,} new codes: choose a longer length."

UPLOAD_EMPTY = "No codes found: put one code per line (or in the first column of a CSV file)."
UPLOAD_ENCODING = "The file is not UTF-8 text."
UPLOAD_TOO_MANY = "At most {most:,} codes per upload ({count:,} given): split the list."
UPLOAD_TOO_LONG = "Codes longer than {most} characters on {lines}. Nothing was added."
UPLOAD_SPACES = "Codes with spaces on {lines}. Nothing was added."

#: No 0/O or 1/I: a code read aloud or copied from paper is read right.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_MAX_LENGTH = CouponCode._meta.get_field("code").max_length or 64
CODES_AT_MOST = 100_000
CODE_LENGTH_LEAST, CODE_LENGTH_MOST = 6, 32
PREFIX_MOST = 20
_PREFIX = re.compile(r"^[A-Za-z0-9_-]*$")
_SPACE = re.compile(r"\s")
#: Line numbers named in one upload error; the rest are counted.
LINES_NAMED = 20


class OfferError(ValueError):
    """An offer that cannot do what was asked; the message says why."""


# -- offers and content blocks ---------------------------------------------------------------


def _errors_add(errors: dict[str, list[str]], key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


def _common_errors(
    errors: dict[str, list[str]],
    *,
    valid_from: dt.date | None,
    valid_until: dt.date | None,
    include: Sequence[Segment],
    exclude: Sequence[Segment],
) -> None:
    """What offers and content blocks share: ordered dates, and a targeting that aims at
    someone and does not both aim at and keep away one segment."""
    if valid_from and valid_until and valid_until < valid_from:
        _errors_add(errors, "valid_until", DATES_REVERSED.format(first=f"{valid_from:%Y-%m-%d}"))
    if not include:
        _errors_add(errors, "include", NO_INCLUDED_SEGMENT)
    both = sorted({s.name for s in include} & {s.name for s in exclude})
    if both:
        _errors_add(errors, "exclude", INCLUDED_AND_EXCLUDED.format(segments=", ".join(both)))


def _targeting_replace(
    target: Offer | ContentBlock,
    link_model: type[OfferSegment] | type[ContentSegment],
    *,
    include: Sequence[Segment],
    exclude: Sequence[Segment],
) -> None:
    """Replace the (saved) target's segments by `include` and `exclude`. Each link is checked
    by `Targeting.clean()` first (the merchant's segment; an included one active): a refusal
    is a ValidationError keyed `include` or `exclude`, and the caller's transaction undoes
    the target's save."""
    owner = "offer" if link_model is OfferSegment else "block"
    links: list[Any] = [
        link_model(**{owner: target, "segment": s, "exclude": False}) for s in include
    ] + [link_model(**{owner: target, "segment": s, "exclude": True}) for s in exclude]
    errors: dict[str, list[str]] = {}
    for link in links:
        try:
            link.clean()
        except ValidationError as exc:
            key = "exclude" if link.exclude else "include"
            for message in exc.messages:
                _errors_add(errors, key, message)
    if errors:
        raise ValidationError(errors)
    link_model.objects.filter(**{owner: target}).delete()
    link_model.objects.bulk_create(links)


def _locked(model: type[T], item: T, merchant: Merchant) -> T:
    """The row being changed, fresh and locked (two saves of one offer run one after the
    other; a form may have changed the caller's instance already); an offer or block of
    another merchant is refused."""
    if item.merchant_id != merchant.pk:
        raise OfferError(NOT_THE_MERCHANTS.format(what=model._meta.verbose_name))
    return model._default_manager.select_for_update().get(pk=item.pk)


@transaction.atomic
def offer_save(
    *,
    merchant: Merchant,
    offer: Offer | None = None,
    name: str,
    description: str = "",
    kind: str = OfferKind.REWARD,
    code_mode: str = CodeMode.NONE,
    shared_code: str = "",
    valid_from: dt.date | None = None,
    valid_until: dt.date | None = None,
    is_active: bool = True,
    include: Iterable[Segment],
    exclude: Iterable[Segment] = (),
    user: Actor = None,
) -> Offer:
    """Create an offer (`offer` None) or change `offer`, and replace its targeting.

    Refused with a ValidationError keyed by field (nothing written): a blank name or the
    name of another of the merchant's offers (any case); a last day before the first; no
    shared code (or one with spaces) when everyone gets one code; leaving the pool of unique
    codes once codes are given; no included segment, or a segment both included and
    excluded; a segment of another merchant, or an inactive one to aim at
    (`Targeting.clean()`). A shared code is kept only in code mode shared.
    """
    include, exclude = list(include), list(exclude)
    name = name.strip()
    shared_code = shared_code.strip() if code_mode == CodeMode.SHARED else ""
    if offer is not None:
        offer = _locked(Offer, offer, merchant)
    errors: dict[str, list[str]] = {}
    if not name:
        _errors_add(errors, "name", NAME_REQUIRED)
    else:
        same_name = Offer.objects.filter(merchant=merchant, name__iexact=name)
        if offer is not None:
            same_name = same_name.exclude(pk=offer.pk)
        if same_name.exists():
            _errors_add(errors, "name", NAME_TAKEN.format(name=name))
    if code_mode == CodeMode.SHARED and not shared_code:
        _errors_add(errors, "shared_code", SHARED_CODE_REQUIRED)
    elif _SPACE.search(shared_code):
        _errors_add(errors, "shared_code", SHARED_CODE_SPACES)
    if offer is not None and offer.code_mode == CodeMode.UNIQUE and code_mode != CodeMode.UNIQUE:
        given = offer.codes.filter(customer__isnull=False).count()
        if given:
            _errors_add(errors, "code_mode", CODES_GIVEN_KEEP_MODE.format(count=f"{given:,}"))
    _common_errors(
        errors, valid_from=valid_from, valid_until=valid_until, include=include, exclude=exclude
    )
    if errors:
        raise ValidationError(errors)

    saved = offer if offer is not None else Offer(merchant=merchant, created_by=user_or_none(user))
    saved.name = name
    saved.description = description
    saved.kind = kind
    saved.code_mode = code_mode
    saved.shared_code = shared_code
    saved.valid_from = valid_from
    saved.valid_until = valid_until
    saved.is_active = is_active
    saved.full_clean(exclude=["merchant", "created_by"], validate_constraints=False)
    saved.save()
    _targeting_replace(saved, OfferSegment, include=include, exclude=exclude)
    logger.info("User %s saved offer %s of merchant %s", user, saved.pk, merchant.pk)
    return saved


@transaction.atomic
def content_block_save(
    *,
    merchant: Merchant,
    block: ContentBlock | None = None,
    title: str,
    body: str = "",
    image_url: str = "",
    link: str = "",
    valid_from: dt.date | None = None,
    valid_until: dt.date | None = None,
    is_active: bool = True,
    include: Iterable[Segment],
    exclude: Iterable[Segment] = (),
    user: Actor = None,
) -> ContentBlock:
    """Create a content block (`block` None) or change `block`, and replace its targeting.

    Refused as `offer_save` is (titles need not be unique): a blank title, reversed dates,
    no included segment, a segment both included and excluded, another merchant's segment,
    an inactive one to aim at, or a URL that is not one.
    """
    include, exclude = list(include), list(exclude)
    title = title.strip()
    if block is not None:
        block = _locked(ContentBlock, block, merchant)
    errors: dict[str, list[str]] = {}
    if not title:
        _errors_add(errors, "title", TITLE_REQUIRED)
    _common_errors(
        errors, valid_from=valid_from, valid_until=valid_until, include=include, exclude=exclude
    )
    if errors:
        raise ValidationError(errors)

    saved = (
        block
        if block is not None
        else ContentBlock(merchant=merchant, created_by=user_or_none(user))
    )
    saved.title = title
    saved.body = body
    saved.image_url = image_url
    saved.link = link
    saved.valid_from = valid_from
    saved.valid_until = valid_until
    saved.is_active = is_active
    saved.full_clean(exclude=["merchant", "created_by"], validate_constraints=False)
    saved.save()
    _targeting_replace(saved, ContentSegment, include=include, exclude=exclude)
    logger.info("User %s saved content block %s of merchant %s", user, saved.pk, merchant.pk)
    return saved


def offer_set_active(*, offer: Offer, active: bool) -> Offer:
    """Switch an offer on or off (its targeting and codes stay)."""
    Offer.objects.filter(pk=offer.pk).update(is_active=active, updated_at=timezone.now())
    offer.is_active = active
    return offer


def content_block_set_active(*, block: ContentBlock, active: bool) -> ContentBlock:
    """Switch a content block on or off (its targeting stays)."""
    ContentBlock.objects.filter(pk=block.pk).update(is_active=active, updated_at=timezone.now())
    block.is_active = active
    return block


# -- codes -----------------------------------------------------------------------------------


def _pool_locked(offer: Offer) -> set[str]:
    """Lock the offer (one fill of its pool at a time) and return the codes it has."""
    if offer.code_mode != CodeMode.UNIQUE:
        raise OfferError(NOT_UNIQUE_CODES.format(offer=offer.name))
    Offer.objects.select_for_update().filter(pk=offer.pk).first()
    return set(CouponCode.objects.filter(offer=offer).values_list("code", flat=True))


@transaction.atomic
def offer_codes_generate(
    *, offer: Offer, count: int, prefix: str = "", length: int = 8
) -> list[str]:
    """Add `count` new random codes to the offer's pool (code mode unique) and return them.

    Each code is `prefix` followed by `length` characters drawn with `secrets` from
    `CODE_ALPHABET` (no 0/O/1/I); a code the pool already has, or one drawn twice, is drawn
    again, so exactly `count` codes are added, in one bulk insert. Refused (ValidationError
    keyed `count`, `prefix` or `length`; OfferError for another code mode): a count outside
    1..100,000, a length outside 6..32, a prefix of other characters than letters, digits,
    dashes and underscores or longer than 20, or prefix and code over 64 characters.
    """
    prefix = prefix.strip()
    errors: dict[str, list[str]] = {}
    if not 1 <= count <= CODES_AT_MOST:
        _errors_add(errors, "count", CODE_COUNT_RANGE.format(most=CODES_AT_MOST))
    if not CODE_LENGTH_LEAST <= length <= CODE_LENGTH_MOST:
        _errors_add(
            errors,
            "length",
            CODE_LENGTH_RANGE.format(least=CODE_LENGTH_LEAST, most=CODE_LENGTH_MOST),
        )
    if len(prefix) > PREFIX_MOST or not _PREFIX.match(prefix):
        _errors_add(errors, "prefix", CODE_PREFIX_INVALID.format(most=PREFIX_MOST))
    elif len(prefix) + length > CODE_MAX_LENGTH:
        _errors_add(errors, "prefix", CODE_TOO_LONG_WITH_PREFIX.format(most=CODE_MAX_LENGTH))
    if errors:
        raise ValidationError(errors)
    taken = _pool_locked(offer)
    new: list[str] = []
    fresh: set[str] = set()
    # Far more draws than a 6-character code (32**6, about 10**9 codes) ever needs; the
    # limit only stops a pool that has (nearly) every code of its length.
    draws_left = count * 20
    while len(new) < count and draws_left:
        draws_left -= 1
        code = prefix + "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
        if code not in taken and code not in fresh:
            fresh.add(code)
            new.append(code)
    if len(new) < count:
        raise ValidationError({"length": CODE_SPACE_EXHAUSTED.format(count=count)})
    CouponCode.objects.bulk_create(CouponCode(offer=offer, code=code) for code in new)
    logger.info("Generated %s codes for offer %s", count, offer.pk)
    return new


@dataclass(frozen=True)
class CodeUpload:
    """What an upload did: codes added, codes the pool had already (skipped), and lines
    that repeated a code listed above them."""

    added: int
    skipped: list[str] = field(default_factory=list)
    repeated: int = 0


def _text_of(text_or_file: str | bytes | IO[str] | IO[bytes]) -> str:
    raw = text_or_file if isinstance(text_or_file, str | bytes) else text_or_file.read()
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError({"codes": UPLOAD_ENCODING}) from exc
    return raw.removeprefix("\ufeff")


def _lines_text(lines: list[int]) -> str:
    """ "line 4", "lines 2, 5 and 9", "lines 1, 2, ... 20 and 13 more"."""
    named = [str(n) for n in lines[:LINES_NAMED]]
    rest = len(lines) - len(named)
    if rest:
        return f"lines {', '.join(named)} and {rest:,} more"
    if len(named) == 1:
        return f"line {named[0]}"
    return f"lines {', '.join(named[:-1])} and {named[-1]}"


def _read_codes(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each non-blank line: the line, or its first CSV column. A
    first line that is just `code` (any case) is a CSV header, not a code."""
    reader = csv.reader(io.StringIO(text))
    rows = []
    for row in reader:
        value = row[0].strip() if row else ""
        if not value or (reader.line_num == 1 and value.lower() == "code"):
            continue
        rows.append((reader.line_num, value))
    return rows


@transaction.atomic
def offer_codes_upload(
    *, offer: Offer, text_or_file: str | bytes | IO[str] | IO[bytes]
) -> CodeUpload:
    """Add the listed codes to the offer's pool (code mode unique): one code per line, or
    the first column of a CSV file (a header `code` is skipped); UTF-8.

    Each code is stripped; blank lines are dropped, and so is a code listed again (counted
    as `repeated`). A code the pool has already is not added again (`skipped`). All or
    nothing: a code longer than 64 characters or with a space inside refuses the whole
    upload, naming its lines (ValidationError keyed `codes`), as do more than 100,000 codes
    or none; OfferError for another code mode.
    """
    rows = _read_codes(_text_of(text_or_file))
    too_long = [line for line, code in rows if len(code) > CODE_MAX_LENGTH]
    spaced = [line for line, code in rows if _SPACE.search(code)]
    problems = []
    if too_long:
        problems.append(UPLOAD_TOO_LONG.format(most=CODE_MAX_LENGTH, lines=_lines_text(too_long)))
    if spaced:
        problems.append(UPLOAD_SPACES.format(lines=_lines_text(spaced)))
    if not rows:
        problems.append(UPLOAD_EMPTY)
    elif len(rows) > CODES_AT_MOST:
        problems.append(UPLOAD_TOO_MANY.format(most=CODES_AT_MOST, count=len(rows)))
    if problems:
        raise ValidationError({"codes": problems})
    taken = _pool_locked(offer)
    listed: set[str] = set()
    new: list[str] = []
    skipped: list[str] = []
    for _line, code in rows:
        if code in listed:
            continue
        listed.add(code)
        (skipped if code in taken else new).append(code)
    CouponCode.objects.bulk_create(CouponCode(offer=offer, code=code) for code in new)
    logger.info("Uploaded %s codes for offer %s (%s skipped)", len(new), offer.pk, len(skipped))
    return CodeUpload(added=len(new), skipped=skipped, repeated=len(rows) - len(listed))


def offer_code_assign(*, offer: Offer, customer: Customer) -> CouponCode:
    """The customer's code of the offer's pool: the one they hold, or a free one given to
    them now. Atomic: two requests at once never hand one code to two customers (the free
    code is locked, skipping codes another request holds) nor two codes to one customer
    (a unique constraint; the loser reads the winner's code)."""
    if offer.code_mode != CodeMode.UNIQUE:
        raise OfferError(NOT_UNIQUE_CODES.format(offer=offer.name))
    if customer.merchant_id != offer.merchant_id:
        raise OfferError(OTHER_MERCHANT.format(customer=customer.external_id, offer=offer.name))
    held = CouponCode.objects.filter(offer=offer, customer=customer).first()
    if held is not None:
        return held
    try:
        with transaction.atomic():
            code = (
                CouponCode.objects.select_for_update(skip_locked=True)
                .filter(offer=offer, customer__isnull=True)
                .order_by("pk")
                .first()
            )
            if code is None:
                raise OfferError(NO_CODE_LEFT.format(offer=offer.name))
            code.customer = customer
            code.assigned_at = timezone.now()
            code.save(update_fields=["customer", "assigned_at"])
            return code
    except IntegrityError:
        # Another request gave this customer a code first: theirs is the customer's.
        return CouponCode.objects.get(offer=offer, customer=customer)
