"""Layer 2, the rules: petitions, signatures, partners, staff and audit, moderation,
export, confirmation tokens, housekeeping. No aiohttp, no click: every door calls these."""
