"""Writes of the campaigns app (keyword-only, typed, `<entity>_<verb>`), one module per
area: `offers` (offers, content blocks, codes), `campaigns` (drafts, schedule, duplicate),
`sending` (the audience snapshot, delivery, results kept)."""

from campaigns.services.offers import OfferError, offer_code_assign

__all__ = ["OfferError", "offer_code_assign"]
