"""Policy files: the packaged default, region overrides, effective versions and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ptsp_gate.contract.events import Program, ReasonCode, Scale, Segment
from ptsp_gate.policy import Policy, PolicyBook, PolicyError, load_policy_book, load_policy_file
from ptsp_gate.policy.codes import BLOCK_TYPE_CODES
from tests.policy_builders import REPO_POLICIES, write_policy_file

J = Program
NATIONAL_FILE = "national.toml"
REGION_FILE = "regions/7314.toml"
REGION_HEAD = 'region = "7314"\nversion = "1"\n'


# --- the packaged national default -------------------------------------------------------------


def test_packaged_national_is_the_design_default() -> None:
    national = load_policy_book().national
    assert national.version == "national-2026.1"
    # The file spells out what the model's defaults already say; the two must never drift.
    assert national == Policy(version="national-2026.1")


def test_packaged_national_values() -> None:
    national = load_policy_book().national
    assert national.arrears_tolerance_months == 2
    assert national.max_enrolment_age_days == 90
    assert national.absent_record == "PENDING"
    assert national.blocking_codes == BLOCK_TYPE_CODES
    assert national.required_programs == {
        Scale.BESAR: {J.JKK, J.JKM, J.JHT, J.JP},
        Scale.MENENGAH: {J.JKK, J.JKM, J.JHT, J.JP},
        Scale.KECIL: {J.JKK, J.JKM, J.JHT},
        Scale.MIKRO: {J.JKK, J.JKM},
    }
    assert national.segment_program_caps == {
        Segment.JAKON: {J.JKK, J.JKM},
        Segment.BPU: {J.JKK, J.JKM},
    }


def test_book_without_directory_has_no_regions() -> None:
    book = load_policy_book(None)
    assert book.regions == {}
    assert book.for_region("7314") is book.national
    assert book.for_region(None) is book.national


# --- the shipped example region ----------------------------------------------------------------


def test_repository_example_region() -> None:
    book = load_policy_book(REPO_POLICIES)
    sidrap = book.for_region("7314")
    assert sidrap.version == "national-2026.1+7314:2026.1"
    assert sidrap.arrears_tolerance_months == 1
    assert sidrap.absent_record == "NOT_REGISTERED"
    # everything it does not mention is the national policy's
    assert sidrap.model_dump(exclude={"version", "arrears_tolerance_months", "absent_record"}) == (
        book.national.model_dump(exclude={"version", "arrears_tolerance_months", "absent_record"})
    )
    assert book.for_region("3201") is book.national


def test_repository_example_region_checked_alone() -> None:
    policy = load_policy_file(REPO_POLICIES / "regions" / "7314.toml")
    assert policy == load_policy_book(REPO_POLICIES).regions["7314"]


# --- directories, merging and versions ---------------------------------------------------------


def test_directory_national_replaces_the_packaged_one(tmp_path: Path) -> None:
    write_policy_file(
        tmp_path, "national.toml", 'version = "nat-7"\narrears_tolerance_months = 4\n'
    )
    write_policy_file(tmp_path, "regions/7314.toml", 'region = "7314"\nversion = "r2"\n')
    book = load_policy_book(tmp_path)
    assert book.national.version == "nat-7"
    assert book.national.arrears_tolerance_months == 4
    # fields the national file leaves out keep the DESIGN defaults
    assert book.national.max_enrolment_age_days == 90
    region = book.for_region("7314")
    assert region.version == "nat-7+7314:r2"
    assert region.arrears_tolerance_months == 4  # inherited from the replaced national


def test_directory_without_national_uses_the_packaged_one(tmp_path: Path) -> None:
    write_policy_file(
        tmp_path,
        "regions/9471.toml",
        'region = "9471"\nversion = "1"\nmax_enrolment_age_days = 30\n',
    )
    book = load_policy_book(tmp_path)
    assert book.national == load_policy_book().national
    assert book.regions["9471"].version == "national-2026.1+9471:1"
    assert book.regions["9471"].max_enrolment_age_days == 30


def test_empty_directory_is_the_packaged_default(tmp_path: Path) -> None:
    assert load_policy_book(tmp_path) == load_policy_book()


def test_several_regions_and_stray_files(tmp_path: Path) -> None:
    write_policy_file(tmp_path, "regions/7314.toml", 'region = "7314"\nversion = "a"\n')
    write_policy_file(tmp_path, "regions/3201.toml", 'region = "3201"\nversion = "b"\n')
    write_policy_file(tmp_path, "regions/README.md", "not a policy")
    book = load_policy_book(tmp_path)
    assert sorted(book.regions) == ["3201", "7314"]
    assert book.for_region("3201").version == "national-2026.1+3201:b"


def test_programme_tables_merge_per_key(tmp_path: Path) -> None:
    write_policy_file(
        tmp_path,
        "regions/7314.toml",
        'region = "7314"\nversion = "1"\n'
        '[required_programs]\nMIKRO = ["JKK", "JKM", "JHT"]\n'
        '[segment_program_caps]\nPU = ["JKK", "JKM", "JHT"]\n',
    )
    region = load_policy_book(tmp_path).regions["7314"]
    assert region.required_programs[Scale.MIKRO] == {J.JKK, J.JKM, J.JHT}
    assert region.required_programs[Scale.BESAR] == {J.JKK, J.JKM, J.JHT, J.JP}
    assert region.segment_program_caps == {
        Segment.JAKON: {J.JKK, J.JKM},
        Segment.BPU: {J.JKK, J.JKM},
        Segment.PU: {J.JKK, J.JKM, J.JHT},
    }


def test_blocking_codes_are_replaced_not_merged(tmp_path: Path) -> None:
    write_policy_file(
        tmp_path,
        "regions/7314.toml",
        REGION_HEAD + 'blocking_codes = ["NOT_REGISTERED", "SANCTION_REQUESTED"]\n',
    )
    region = load_policy_book(tmp_path).regions["7314"]
    assert region.blocking_codes == {ReasonCode.NOT_REGISTERED, ReasonCode.SANCTION_REQUESTED}


def test_load_policy_file_national(tmp_path: Path) -> None:
    path = write_policy_file(
        tmp_path, "candidate.toml", 'version = "n-9"\nabsent_record = "NOT_REGISTERED"\n'
    )
    policy = load_policy_file(path)
    assert policy.version == "n-9"
    assert policy.absent_record == "NOT_REGISTERED"


def test_load_policy_file_region_over_a_given_base(tmp_path: Path) -> None:
    base = Policy(version="base-1", arrears_tolerance_months=5)
    path = write_policy_file(tmp_path, "7314.toml", 'region = "7314"\nversion = "3"\n')
    policy = load_policy_file(path, base=base)
    assert policy.version == "base-1+7314:3"
    assert policy.arrears_tolerance_months == 5


def test_policy_book_lookup() -> None:
    national = Policy(version="n")
    region = Policy(version="n+7314:1", arrears_tolerance_months=1)
    book = PolicyBook(national=national, regions={"7314": region})
    assert book.for_region("7314") is region
    assert book.for_region("7315") is national
    assert book.for_region(None) is national


# --- the model refuses what files would refuse -------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"required_programs": {scale: {J.JKK, J.JKM, J.JKP} for scale in Scale}},
        {"segment_program_caps": {Segment.JAKON: {J.JKP}}},
        {"blocking_codes": {ReasonCode.ENROLMENT_STALE}},
        {"required_programs": {Scale.MIKRO: {J.JKK}}},
        {"arrears_tolerance_months": -1},
        {"max_enrolment_age_days": -1},
        {"version": "has space"},
        {"version": ""},
        {"surprise": True},
    ],
    ids=[
        "JKP required",
        "JKP in a cap",
        "pending code blocking",
        "scales missing",
        "negative tolerance",
        "negative age",
        "version with space",
        "empty version",
        "unknown field",
    ],
)
def test_model_refusals(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate({"version": "v", **changes})


def test_model_is_frozen() -> None:
    policy = Policy(version="v")
    with pytest.raises(ValidationError):
        policy.arrears_tolerance_months = 9  # type: ignore[misc]


# --- every refusal, as one line naming the file ------------------------------------------------

# What a region file says after its `region` and `version`, and a fragment of the refusal.
BAD_REGION_OVERRIDES = {
    # unknown keys and values
    "unknown region key": ("tolerance = 1\n", "unknown key 'tolerance'"),
    "unknown scale": ('[required_programs]\nRAKSASA = ["JKK"]\n', "required_programs.RAKSASA"),
    "unknown reason code": ('blocking_codes = ["ARREARS", "LATE"]\n', "blocking_codes"),
    "absent_record unknown": ('absent_record = "BLOCK"\n', "absent_record"),
    # numbers
    "tolerance as string": ('arrears_tolerance_months = "2"\n', "'2'"),
    "tolerance as float": ("arrears_tolerance_months = 2.0\n", "2.0"),
    "tolerance as bool": ("max_enrolment_age_days = true\n", "True"),
    "negative arrears tolerance": ("arrears_tolerance_months = -1\n", "arrears_tolerance_months"),
    "negative age": ("max_enrolment_age_days = -5\n", "max_enrolment"),
    # blocking codes
    "codes as a string": ('blocking_codes = "ARREARS"\n', "blocking_codes"),
    "unknown code made blocking": ('blocking_codes = ["ENROLMENT_UNKNOWN"]\n', "cannot block"),
    "stale code made blocking": (
        'blocking_codes = ["ARREARS", "ENROLMENT_STALE"]\n',
        "ENROLMENT_STALE cannot block",
    ),
    # programme tables
    "programmes as a list": ('required_programs = ["JKK"]\n', "required_programs"),
    "JKP in a cap": ('[segment_program_caps]\nBPU = ["JKK", "JKM", "JKP"]\n', "JKP"),
    "unknown programme": (
        '[required_programs]\nMIKRO = ["JKK", "JKN"]\n',
        "required_programs.MIKRO",
    ),
    "programme set as a string": (
        '[segment_program_caps]\nJAKON = "JKK"\n',
        "segment_program_caps.JAKON",
    ),
    "JKP required in a region": (
        '[required_programs]\nKECIL = ["JKK", "JKM", "JHT", "JKP"]\n',
        "JKP is never a requirement",
    ),
}

# What a national file says after its `version`, and a fragment of the refusal.
BAD_NATIONAL_OVERRIDES = {
    "unknown national key": ('colour = "red"\n', "unknown key 'colour'"),
    "JKP required nationally": (
        '[required_programs]\nBESAR = ["JKP"]\nMENENGAH = ["JKK"]\n'
        'KECIL = ["JKK"]\nMIKRO = ["JKK"]\n',
        "JKP is never a requirement",
    ),
    "national requirement missing a scale": (
        '[required_programs]\nBESAR = ["JKK"]\n',
        "no requirement for scale",
    ),
    "advisory code made blocking": ('blocking_codes = ["NO_EMPLOYEES_DECLARED"]\n', "cannot block"),
    "invalid event made blocking": ('blocking_codes = ["INVALID_EVENT"]\n', "cannot block"),
}

# Whole files: where they lie, what they say, and a fragment of the refusal.
BAD_FILES = {
    **{
        name: (REGION_FILE, REGION_HEAD + overrides, fragment)
        for name, (overrides, fragment) in BAD_REGION_OVERRIDES.items()
    },
    **{
        name: (NATIONAL_FILE, 'version = "n"\n' + overrides, fragment)
        for name, (overrides, fragment) in BAD_NATIONAL_OVERRIDES.items()
    },
    # versions
    "national version as number": (NATIONAL_FILE, "version = 3\n", "version must be"),
    "region version as date": (REGION_FILE, 'region = "7314"\nversion = 2026-01-01\n', "version"),
    "version with a separator": (NATIONAL_FILE, 'version = "a+b"\n', "version must be"),
    "national file without version": (NATIONAL_FILE, "max_enrolment_age_days = 30\n", "version"),
    # region naming
    "region differs from file name": (
        REGION_FILE,
        'region = "7315"\nversion = "1"\n',
        "does not match the file name",
    ),
    "national file naming a region": (
        NATIONAL_FILE,
        'region = "7314"\nversion = "n"\n',
        "must not name a region",
    ),
    "region of three digits": ("regions/731.toml", 'region = "731"\nversion = "1"\n', "4-digit"),
    "region as a number": (REGION_FILE, 'region = 7314\nversion = "1"\n', "4-digit"),
    "file name not a code": ("regions/sidrap.toml", REGION_HEAD, "file name"),
    "region file without region": (REGION_FILE, 'version = "1"\n', "missing key 'region'"),
    "region file without version": (REGION_FILE, 'region = "7314"\n', "missing key 'version'"),
    # broken files
    "broken TOML": (REGION_FILE, 'region = "7314\nversion = 1\n', "not valid TOML"),
    "duplicate key": (NATIONAL_FILE, 'version = "a"\nversion = "b"\n', "not valid TOML"),
}


@pytest.mark.parametrize(("relative", "text", "fragment"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_policy_files_are_refused(
    tmp_path: Path, relative: str, text: str, fragment: str
) -> None:
    path = write_policy_file(tmp_path, relative, text)
    with pytest.raises(PolicyError) as caught:
        load_policy_book(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message
    assert "\n" not in message


def test_many_problems_are_summarised_on_one_line(tmp_path: Path) -> None:
    path = write_policy_file(
        tmp_path,
        NATIONAL_FILE,
        'version = "n"\na = 1\nb = 2\nc = 3\nd = 4\narrears_tolerance_months = -1\n',
    )
    with pytest.raises(PolicyError, match=r"\(and 2 more\)$") as caught:
        load_policy_file(path)
    assert "\n" not in str(caught.value)


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PolicyError, match="does not exist") as caught:
        load_policy_book(missing)
    assert str(caught.value).startswith(str(missing))


def test_directory_that_is_a_file(tmp_path: Path) -> None:
    path = write_policy_file(tmp_path, "policies", "")
    with pytest.raises(PolicyError, match="not a directory"):
        load_policy_book(path)


def test_regions_that_is_a_file(tmp_path: Path) -> None:
    write_policy_file(tmp_path, "regions", "")
    with pytest.raises(PolicyError, match="expected a directory"):
        load_policy_book(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="file not found"):
        load_policy_file(tmp_path / "7314.toml")


def test_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "7314.toml").mkdir()
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy_file(tmp_path / "7314.toml")


def test_base_given_but_no_region(tmp_path: Path) -> None:
    path = write_policy_file(tmp_path, "7314.toml", 'version = "1"\n')
    with pytest.raises(PolicyError, match="missing key 'region'"):
        load_policy_file(path, base=Policy(version="n"))


def test_one_bad_region_stops_the_whole_book(tmp_path: Path) -> None:
    write_policy_file(tmp_path, "regions/3201.toml", 'region = "3201"\nversion = "1"\n')
    write_policy_file(tmp_path, "regions/7314.toml", 'region = "7314"\nversion = "1"\nbogus = 1\n')
    with pytest.raises(PolicyError, match=r"7314\.toml"):
        load_policy_book(tmp_path)
