"""Every label of the pages, in Indonesian (the default) and English."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("id", "en")
DEFAULT = "id"

# key: (Indonesian, English)
_TEXT: dict[str, tuple[str, str]] = {
    "app": ("Konsol Petugas Kepatuhan", "Compliance officer console"),
    "skip": ("Langsung ke isi", "Skip to content"),
    "language": ("Bahasa", "Language"),
    "sign_in": ("Masuk", "Sign in"),
    "sign_out": ("Keluar", "Sign out"),
    "username": ("Nama pengguna", "Username"),
    "password": ("Kata sandi", "Password"),
    "sign_in_failed": (
        "Nama pengguna atau kata sandi salah, atau akun dikunci sementara.",
        "Wrong username or password, or the account is locked for a while.",
    ),
    "throttled": (
        "Terlalu banyak percobaan masuk yang gagal dari alamat ini. Coba lagi nanti.",
        "Too many failed sign-ins from this address. Try again later.",
    ),
    "sso_sign_in": ("Masuk dengan SSO provinsi", "Sign in with the province's single sign-on"),
    "sso_failed": (
        "Masuk lewat SSO tidak berhasil. Coba lagi, atau masuk dengan kata sandi.",
        "Single sign-on did not succeed. Try again, or sign in with a password.",
    ),
    "sso_no_account": (
        "Identitas SSO Anda belum terhubung ke akun konsol, atau akunnya dinonaktifkan."
        " Hubungi admin.",
        "Your single sign-on identity is not linked to a console account, or the account is"
        " disabled. Ask an admin.",
    ),
    "sso_unavailable": (
        "SSO provinsi tidak dapat dihubungi saat ini. Masuk dengan kata sandi atau coba lagi"
        " nanti.",
        "The province's single sign-on cannot be reached now. Sign in with a password or try"
        " again later.",
    ),
    "signed_in_as": ("Masuk sebagai", "Signed in as"),
    "role": ("Peran", "Role"),
    "dashboard": ("Ringkasan", "Dashboard"),
    "flagged": ("Pelaku usaha ditandai", "Flagged employers"),
    "audit": ("Catatan audit", "Audit log"),
    "region": ("Wilayah", "Region"),
    "all_my_regions": ("Semua wilayah saya", "All my regions"),
    "reason": ("Alasan", "Reason"),
    "any_reason": ("Semua alasan", "Any reason"),
    "filter": ("Saring", "Filter"),
    "search": ("Cari", "Search"),
    "search_hint": (
        "NIB (13 angka), NPWP (15 atau 16 angka) atau nama (minimal 3 huruf)",
        "NIB (13 digits), NPWP (15 or 16 digits) or name (at least 3 letters)",
    ),
    "search_results": ("Hasil pencarian", "Search results"),
    "no_results": ("Tidak ada yang cocok di wilayah Anda.", "Nothing matches in your regions."),
    "no_flagged": ("Tidak ada pelaku usaha yang ditandai.", "No employer is flagged."),
    "next_page": ("Halaman berikutnya", "Next page"),
    "first_page": ("Halaman pertama", "First page"),
    "export_csv": ("Unduh CSV", "Download CSV"),
    "export_xlsx": ("Unduh Excel (.xlsx)", "Download Excel (.xlsx)"),
    "outcome": ("Hasil", "Outcome"),
    "CLEARED": ("Lolos", "Cleared"),
    "BLOCKED": ("Diblokir", "Blocked"),
    "PENDING": ("Tertunda", "Pending"),
    "REJECTED": ("Ditolak", "Rejected"),
    "flagged_now": ("Ditandai saat ini", "Flagged now"),
    "flagged_in_period": ("Ditandai (12 bulan)", "Flagged (12 months)"),
    "cleared_after_flag": ("Lolos setelah ditandai", "Cleared after being flagged"),
    "conversion": ("Konversi", "Conversion"),
    "applications_by_month": ("Permohonan per bulan", "Applications by month"),
    "month": ("Bulan", "Month"),
    "figures_as_of": (
        "Angka bulanan dihitung pada",
        "Monthly figures computed at",
    ),
    "applications": ("Permohonan", "Applications"),
    "employer": ("Pelaku usaha", "Employer"),
    "enrolment": ("Kepesertaan BPJS Ketenagakerjaan", "BPJS Ketenagakerjaan enrolment"),
    "enrolment_unknown": (
        "Tidak ada data kepesertaan untuk NIB ini.",
        "No enrolment record for this NIB.",
    ),
    "as_of": ("Data per", "Data as of"),
    "status": ("Status", "Status"),
    "segment": ("Segmen", "Segment"),
    "programs": ("Program", "Programmes"),
    "workers_enrolled": ("Tenaga kerja terdaftar", "Workers enrolled"),
    "arrears_months": ("Tunggakan (bulan)", "Arrears (months)"),
    "npwp": ("NPWP", "NPWP"),
    "standing": ("Status saat ini", "Current standing"),
    "decided_at": ("Diputuskan", "Decided"),
    "policy_version": ("Versi kebijakan", "Policy version"),
    "episodes": ("Periode ditandai", "Flagged episodes"),
    "began": ("Mulai", "Began"),
    "ended": ("Berakhir", "Ended"),
    "still_open": ("masih berlangsung", "still open"),
    "timeline": ("Riwayat keputusan", "Decision timeline"),
    "application": ("Permohonan", "Application"),
    "action": ("Tindakan", "Action"),
    "reasons": ("Alasan", "Reasons"),
    "supersedes": ("Menggantikan", "Supersedes"),
    "open_applications": ("Permohonan aktif", "Open applications"),
    "blocked_applications": ("Permohonan diblokir", "Blocked applications"),
    "when": ("Waktu", "When"),
    "who": ("Siapa", "Who"),
    "what": ("Apa", "What"),
    "subject": ("Objek", "Subject"),
    "from_where": ("Dari", "From"),
    "channel": ("Saluran", "Channel"),
    "detail": ("Rincian", "Detail"),
    "older": ("Lebih lama", "Older"),
    "error": ("Kesalahan", "Error"),
    "back": ("Kembali", "Back"),
    "not_found": ("Tidak ditemukan", "Not found"),
    "forbidden": ("Tidak diizinkan", "Not allowed"),
    "masked": ("disamarkan", "masked"),
    "overrides": ("Pengecualian", "Overrides"),
    "override": ("Pengecualian", "Override"),
    "ask_override": ("Ajukan pengecualian", "Ask for an override"),
    "override_hint": (
        "Pengecualian membuat permohonan yang diblokir atau tertunda menjadi lolos sampai"
        " tanggal berakhirnya, setelah disetujui oleh supervisor lain. Gateway menerbitkan"
        " keputusan baru dengan alasan OFFICER_OVERRIDE dan memutus ulang saat berakhir.",
        "An override clears blocked or pending applications until it ends, once another"
        " person, a supervisor, approves it. The gate issues a new decision with the reason"
        " OFFICER_OVERRIDE, and decides again when the override ends.",
    ),
    "scope": ("Cakupan", "Scope"),
    "APPLICATION": ("Satu permohonan", "One application"),
    "EMPLOYER": (
        "Semua permohonan pelaku usaha ini di wilayah",
        "Every application of this employer in the region",
    ),
    "legal_basis": ("Dasar hukum", "Legal basis"),
    "document_ref": ("Nomor dokumen", "Document reference"),
    "override_reason": ("Alasan pengecualian", "Why"),
    "valid_until": ("Berlaku sampai dengan", "Valid until (inclusive)"),
    "expires": ("Berakhir", "Ends"),
    "asked_by": ("Diajukan oleh", "Asked by"),
    "asked_at": ("Diajukan", "Asked"),
    "state": ("Status", "State"),
    "any_state": ("Semua status", "Any state"),
    "decided_by": ("Diputuskan oleh", "Decided by"),
    "note": ("Catatan", "Note"),
    "approve": ("Setujui", "Approve"),
    "refuse": ("Tolak", "Refuse"),
    "revoke": ("Cabut", "Revoke"),
    "revoked_by": ("Dicabut oleh", "Revoked by"),
    "ASKED": ("Diajukan", "Asked"),
    "GRANTED": ("Disetujui", "Granted"),
    "REFUSED": ("Ditolak", "Refused"),
    "REVOKED": ("Dicabut", "Revoked"),
    "EXPIRED": ("Kedaluwarsa", "Expired"),
    "applied_at": ("Diterapkan gateway", "Applied by the gate"),
    "not_yet": ("belum", "not yet"),
    "decisions_under": (
        "Keputusan yang diterbitkan berdasarkan pengecualian ini",
        "Decisions issued under this override",
    ),
    "no_decisions_yet": (
        "Belum ada keputusan. Gateway menerapkan pengecualian yang disetujui dalam beberapa detik.",
        "No decision yet. The gate applies a granted override within seconds.",
    ),
    "second_person": (
        "Pengecualian yang Anda ajukan harus diputuskan oleh orang lain.",
        "An override you asked for is decided by someone else.",
    ),
    "no_overrides": ("Belum ada pengecualian.", "No override yet."),
    "no_open_applications": (
        "Tidak ada permohonan yang diblokir atau tertunda.",
        "No blocked or pending application.",
    ),
}


def translator(language: str) -> Callable[[str], str]:
    index = LANGUAGES.index(language) if language in LANGUAGES else 0

    def t(key: str) -> str:
        pair = _TEXT.get(key)
        return pair[index] if pair else key

    return t


def keys() -> set[str]:
    return set(_TEXT)


def missing_translations() -> list[str]:
    """Keys whose two labels are blank: every label must exist in both languages."""
    return [k for k, (a, b) in _TEXT.items() if not a.strip() or not b.strip()]
