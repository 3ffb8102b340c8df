"""The import graph of the core and the services, imports inside functions and TYPE_CHECKING blocks
included: no two modules import each other, even through others, and the core never imports a
service (it finds them through the `ptsp_gate.services` entry points)."""

from __future__ import annotations

import graphlib

import grimp
import pytest

CORE = "ptsp_gate"
SERVICES = ("ptsp_gate_permit_checker", "ptsp_gate_enrolment_sync", "ptsp_gate_officer_console")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(CORE, *SERVICES, cache_dir=None)


def _describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"    {importer}:{detail['line_number']}: {detail['line_contents']}")
    return "\n".join(lines)


def test_no_module_imports_itself_back(graph: grimp.ImportGraph) -> None:
    imports = {m: graph.find_modules_directly_imported_by(m) - {m} for m in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        pytest.fail("import cycle:\n" + _describe(graph, sorted(set(exc.args[1]))))


def test_the_core_never_imports_a_service(graph: grimp.ImportGraph) -> None:
    core = {CORE, *graph.find_descendants(CORE)}
    services = {m for s in SERVICES for m in {s, *graph.find_descendants(s)}}
    wrong = [
        f"{importer}:{detail['line_number']}: {detail['line_contents']}"
        for importer in sorted(core)
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & services)
        for detail in graph.get_import_details(importer=importer, imported=imported)
    ]
    assert not wrong, "the core imports a service package:\n" + "\n".join(wrong)


def test_a_cycle_is_found_and_named() -> None:
    fake = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.d", "p.a")]:
        fake.add_import(importer=importer, imported=imported)
    with pytest.raises(pytest.fail.Exception, match=r"p\.a <-> p\.b <-> p\.c"):
        test_no_module_imports_itself_back(fake)
