"""clients/java: `clients/java/build.sh test` compiles the Java client with javac against
Debian's jars (gson, msgpack-core; `clients/java/install-deps.sh`), makes the reference
data (every fixture and synthetic spec exported to `portable`, with the NumPy
reference's outputs) and runs the JUnit 5 suite: PortablePolicy parity on 83 cases;
PortablePolicy on the portable export of every zoo agent (../shared/zoo and zoo-more, 54
at their real sizes, data from tests/zoo_reference.py) against SB2's goldens under
parity.judge's rule and float32 bound, and a nudged export rejected; and SbExportClient
against a real `sbexportd serve --tcp` daemon (JSON and msgpack, errors, concurrency, the
Example program). And the packaged jar on its own: the Maven
artifact of pom.xml, used by a program of another package with only the jar and its
Debian dependency jars on the classpath."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import zoo_reference
from zoo import KNOWN_FAILURES, agents

ROOT = Path(__file__).resolve().parents[1]
JAVA = ROOT / "clients" / "java"
BUILD_SH = JAVA / "build.sh"
# Debian's Maven-layout repository (libgoogle-gson-java, libmsgpack-java install there too)
MAVEN_REPO = Path("/usr/share/maven-repo")


def test_java_client():
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("javac not found (OpenJDK 17): the Java client is NOT tested")
    env = {**os.environ, "SBEXPORTD_PYTHON": sys.executable}
    proc = subprocess.run(["sh", str(BUILD_SH), "test"], capture_output=True, text=True, env=env, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    found = re.search(r"\[\s*(\d+) tests successful\s*\]", out)
    failed = re.search(r"\[\s*(\d+) tests failed\s*\]", out)
    assert found and int(found.group(1)) > 90, out[-4000:]
    assert failed and int(failed.group(1)) == 0, out[-4000:]
    # every zoo agent ran, and every auto export (a missing zoo fails zoo_reference.py, and so build.sh)
    # (build.sh pins JUnit's ascii tree: the unicode one depends on the JVM's locale)
    ran = set(re.findall(r"^[| ]*[+']-- (\S+/\S+\.(?:pkl|zip)(?: \[auto\])?) \[OK\]$", out, re.M))
    exported = {a.id for a in agents() if (a.id, "portable") not in KNOWN_FAILURES}
    assert exported <= zoo_reference.checks() and ran == zoo_reference.checks(), sorted(ran ^ zoo_reference.checks())
    assert re.search(r"^[| ]*[+']-- aNudgedExportIsRejected\(\) \[OK\]$", out, re.M), out[-4000:]


def _pom() -> tuple[dict[str, str], list[dict[str, str]]]:
    """pom.xml's coordinate and its compile-scope dependencies."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(JAVA / "pom.xml").getroot()
    props = {p.tag.split("}")[1]: p.text for p in root.find("m:properties", ns)}

    def text(el, tag):
        value = el.find(f"m:{tag}", ns)
        if value is None:
            return None
        t = value.text.strip()
        return props[t[2:-1]] if t.startswith("${") else t
    coordinate = {k: text(root, k) for k in ("groupId", "artifactId", "version")}
    deps = [{k: text(d, k) for k in ("groupId", "artifactId", "version", "scope")}
            for d in root.find("m:dependencies", ns)]
    return coordinate, [d for d in deps if d["scope"] in (None, "compile", "runtime")]


def test_jar_alone_serves_another_project(tmp_path):
    """build.sh packages sbexportd-client-VERSION.jar (pom.xml's coordinate, its pom inside);
    examples/UseTheJar.java, in another package, compiles against the jar alone and runs
    with the jar and the pom's dependencies from Debian's Maven repository: a real daemon
    opens the bundled agent, exports it to portable, and PortablePolicy agrees with the
    daemon's NumPy reference."""
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("javac not found (OpenJDK 17): the Java jar is NOT tested")
    coordinate, deps = _pom()
    assert coordinate == {"groupId": "io.sbexportd", "artifactId": "sbexportd-client", "version": coordinate["version"]}
    proc = subprocess.run(["sh", str(BUILD_SH)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jar = JAVA / "build" / f"{coordinate['artifactId']}-{coordinate['version']}.jar"
    assert f"{jar} (io.sbexportd:sbexportd-client:{coordinate['version']})" in proc.stdout

    with zipfile.ZipFile(jar) as z:
        names = z.namelist()
        meta = "META-INF/maven/io.sbexportd/sbexportd-client/"
        assert z.read(meta + "pom.xml") == (JAVA / "pom.xml").read_bytes()
        props = dict(line.split("=", 1) for line in z.read(meta + "pom.properties").decode().split())
        manifest = z.read("META-INF/MANIFEST.MF").decode()
    assert props == coordinate
    assert f"Implementation-Version: {coordinate['version']}" in manifest
    classes = [n for n in names if n.endswith(".class")]
    assert "io/sbexportd/PortablePolicy.class" in classes and "io/sbexportd/SbExportClient.class" in classes
    assert all(n.startswith("io/sbexportd/") for n in classes), classes  # no test or bench classes

    # the pom's dependencies, resolved by their coordinates in Debian's Maven repository
    assert {d["artifactId"] for d in deps} == {"gson", "msgpack-core"}
    dep_jars = [MAVEN_REPO / d["groupId"].replace(".", "/") / d["artifactId"] / d["version"]
                / f"{d['artifactId']}-{d['version']}.jar" for d in deps]
    missing = [str(p) for p in dep_jars if not p.is_file()]
    assert not missing, f"{missing}: run clients/java/install-deps.sh"

    classes_dir = tmp_path / "classes"
    proc = subprocess.run(["javac", "--release", "11", "-Xlint:all", "-Werror", "-d", str(classes_dir),
                           "-cp", str(jar), str(JAVA / "examples" / "UseTheJar.java")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    classpath = os.pathsep.join(map(str, [jar, *dep_jars, classes_dir]))
    out = tmp_path / "exported"
    proc = subprocess.run(["java", "-cp", classpath, "example.UseTheJar", sys.executable,
                           str(ROOT / "examples" / "ppo2_CartPole-v1.pkl"), str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said
    assert f"sbexportd-client {coordinate['version']} from file:{jar}" in said
    for name in ("action", "probs", "values"):
        assert re.search(rf"^{name} .* ok$", proc.stdout, re.M), said
    assert "UseTheJar: the portable export agrees with the daemon" in proc.stdout
    assert (out / "portable" / "manifest.json").is_file()
