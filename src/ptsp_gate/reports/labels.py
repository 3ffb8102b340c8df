"""Column headings of the officers' reports: the field names (for scripts, the default), or
labels in Indonesian or English (for people, in a spreadsheet)."""

from __future__ import annotations

from collections.abc import Sequence

LANGUAGES = ("fields", "id", "en")

# field: (Indonesian, English)
_LABELS: dict[str, tuple[str, str]] = {
    "nib": ("NIB", "NIB"),
    "employer_name": ("Nama Pelaku Usaha", "Employer name"),
    "region_code": ("Kode Wilayah", "Region code"),
    "reason_codes": ("Alasan Pemblokiran", "Block reasons"),
    "blocked_applications": ("Permohonan Diblokir", "Blocked applications"),
    "first_flagged_at": ("Pertama Ditandai (UTC)", "First flagged (UTC)"),
    "last_flagged_at": ("Keputusan Terakhir (UTC)", "Latest decision (UTC)"),
    "enrolment_as_of": ("Data Kepesertaan per (UTC)", "Enrolment data as of (UTC)"),
    "period": ("Periode", "Period"),
    "applications_cleared": ("Permohonan Lolos", "Applications cleared"),
    "applications_blocked": ("Permohonan Diblokir", "Applications blocked"),
    "applications_pending": ("Permohonan Tertunda", "Applications pending"),
    "applications_rejected": ("Permohonan Ditolak", "Applications rejected"),
    "employers_flagged": ("Pelaku Usaha Ditandai", "Employers flagged"),
    "flag_episodes": ("Kejadian Penandaan", "Flagged episodes"),
    "cleared_within_30d": ("Lolos dalam 30 Hari", "Cleared within 30 days"),
    "cleared_within_60d": ("Lolos dalam 60 Hari", "Cleared within 60 days"),
    "cleared_within_90d": ("Lolos dalam 90 Hari", "Cleared within 90 days"),
    "cleared": ("Lolos Seluruhnya", "Cleared in all"),
    "median_days_to_clear": ("Median Hari sampai Lolos", "Median days to clear"),
    "ended_otherwise": ("Berakhir Lainnya", "Ended otherwise"),
    "still_flagged": ("Masih Ditandai", "Still flagged"),
    "expired": ("Kedaluwarsa", "Expired"),
    "top_reasons": ("Alasan Utama", "Leading reasons"),
}


def headings(columns: Sequence[str], language: str) -> list[str]:
    """The heading of each column in `language` (one of LANGUAGES)."""
    if language == "fields":
        return list(columns)
    index = LANGUAGES.index(language) - 1
    return [_LABELS[c][index] if c in _LABELS else c for c in columns]
