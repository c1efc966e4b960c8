"""How the extension module is linked."""

import shutil
import subprocess
import sys

import pytest

import tileflash


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("nm") is None, reason="needs Linux and nm")
def test_module_exports_no_static_cxx_runtime():
    """Where the compiler links libstdc++ statically (the GPU hosts' does), its definitions must stay
    local to tileflash._C: exported, the libstdc++.so that numpy or torch loaded first interposed part
    of them and the first error message built with std::ostringstream crashed the process."""
    listing = subprocess.run(["nm", "-D", "--defined-only", tileflash._C.__file__], capture_output=True, text=True,
                             check=True).stdout
    exported = [line.split() for line in listing.splitlines() if len(line.split()) == 3]
    # Strong definitions (T, D, B, R) of the standard library only come from a linked-in runtime;
    # weak ones (W, V, u) are inline templates of this module's own code.
    runtime = [name for _, kind, name in exported if kind in "TDBR" and name.startswith(("_ZNSt", "_ZNKSt", "_ZSt"))]
    assert not runtime, f"{len(runtime)} C++ runtime symbols exported, e.g. {runtime[:3]}"
    assert any(name == "PyInit__C" for _, _, name in exported)
