"""The Space's requirements.txt and the local requirements-dev.txt agree (issue 18).

Spaces copy only requirements.txt before installing it, so it must be self-contained and pin a torch release that
ZeroGPU documents; a local machine installs requirements-dev.txt with the CPU torch of the tests instead.
"""

from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ZEROGPU_TORCH = {"2.8.0", "2.9.1", "2.10.0", "2.11.0"}  # the releases ZeroGPU documents (2026)
LOCAL_INSTALL = "pip install torch==2.13.0 -r requirements-dev.txt"


def _lines(name: str) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line]


def _requirements(name: str) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in _lines(name)]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def test_space_requirements_are_self_contained_and_pin_a_zerogpu_torch():
    assert not [line for line in _lines("requirements.txt") if line.startswith("-")], "Spaces copy only this file"
    torch = _requirements("requirements.txt")["torch"]
    pins = [s.version for s in torch.specifier if s.operator == "=="]
    assert pins and pins[0] in ZEROGPU_TORCH, f"requirements.txt must pin one of {sorted(ZEROGPU_TORCH)}: {torch}"


def test_dev_requirements_repeat_every_runtime_requirement_but_torchs_pin():
    space, dev = _requirements("requirements.txt"), _requirements("requirements-dev.txt")

    def agrees(name: str, r: Requirement) -> bool:  # the same, or a pin the Space's range admits (spaces for tests)
        pins = [s.version for s in dev[name].specifier if s.operator == "=="] if name in dev else []
        return name in dev and (dev[name] == r or (len(pins) == 1 and r.specifier.contains(pins[0])))

    missing = [str(r) for name, r in space.items() if name != "torch" and not agrees(name, r)]
    assert not missing, f"requirements-dev.txt lacks (or differs on) {missing}"
    assert not [line for line in _lines("requirements-dev.txt") if line.startswith("-r")]
    # its torch range admits the tests' CPU build, and is no pin that would clash with the command's torch==2.13.0
    assert dev["torch"].specifier.contains("2.13.0")


def test_readme_and_ci_install_the_same_way():
    assert LOCAL_INSTALL in (ROOT / "README.md").read_text()
    assert LOCAL_INSTALL in (ROOT / ".ci" / "run").read_text()
