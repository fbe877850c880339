"""Writes of the campaigns app (keyword-only, typed, `<entity>_<verb>`), one module per
area: `offers` (offers, content blocks, codes), `campaigns` (drafts, schedule, duplicate),
`sending` (the audience snapshot, delivery, results kept)."""

from campaigns.services.offers import (
    CodeUpload,
    OfferError,
    content_block_save,
    content_block_set_active,
    offer_code_assign,
    offer_codes_generate,
    offer_codes_upload,
    offer_save,
    offer_set_active,
)

__all__ = [
    "CodeUpload",
    "OfferError",
    "content_block_save",
    "content_block_set_active",
    "offer_code_assign",
    "offer_codes_generate",
    "offer_codes_upload",
    "offer_save",
    "offer_set_active",
]
