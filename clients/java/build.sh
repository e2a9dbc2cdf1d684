#!/bin/sh
# Build and test the Java client from Debian's jars (javac + the JUnit console launcher),
# without Maven. Users build with Maven as usual (pom.xml); this script is for machines
# without Maven Central.
#
#   build.sh            compile into build/classes (javac -Xlint:all -Werror), package
#                       build/sbexportd-client-VERSION.jar: the Maven artifact
#                       io.sbexportd:sbexportd-client:VERSION of pom.xml (its pom inside, as Maven
#                       puts it), which needs gson and msgpack-core beside it at run time
#   build.sh test       + reference data (build/testdata, from sbexportd; the zoo agents' from
#                       tests/zoo_reference.py, shared with the Node client) and the JUnit suite
#   build.sh bench      + the latency benchmark (a table on stdout)
#   build.sh example [MODEL]   + run io.sbexportd.Example against a daemon it starts
#   build.sh clean
#
# Environment: SBEXPORTD_PYTHON (default: the repo's .venv/bin/python), SBEXPORTD_JARS
# (default /usr/share/java), SBEXPORTD_ZOO_REFERENCE (default: the repo's build/zoo-reference),
# SBEXPORTD_JAVA_TESTS (a JUnit --select-* argument, e.g.
# --select-class=io.sbexportd.PortablePolicyTest).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${SBEXPORTD_PYTHON:-$ROOT/.venv/bin/python}
JARS=${SBEXPORTD_JARS:-/usr/share/java}
BUILD=$HERE/build
ZOOREF=${SBEXPORTD_ZOO_REFERENCE:-$ROOT/build/zoo-reference}
CP="$JARS/gson.jar:$JARS/msgpack-core.jar"
JUNIT=$JARS/junit-platform-console-standalone.jar
cmd=${1:-compile}

for jar in "$JARS/gson.jar" "$JARS/msgpack-core.jar"; do
    [ -f "$jar" ] || { echo "build.sh: $jar missing; run clients/java/install-deps.sh" >&2; exit 2; }
done

compile() {  # compile OUT CLASSPATH SOURCE_DIR...
    out=$1; cp=$2; shift 2
    rm -rf "$out"; mkdir -p "$out"
    find "$@" -name '*.java' > "$out.sources"
    javac --release 11 -Xlint:all -Werror -encoding UTF-8 -d "$out" -cp "$cp" @"$out.sources"
}

pom() {  # pom TAG: the project's own groupId / artifactId / version (pom.xml's top level)
    sed -n "s|^  <$1>\(.*\)</$1>\s*\$|\1|p" "$HERE/pom.xml"
}
GROUP=$(pom groupId)
ARTIFACT=$(pom artifactId)
VERSION=$(pom version)
JAR=$BUILD/$ARTIFACT-$VERSION.jar

main() {
    compile "$BUILD/classes" "$CP" "$HERE/src/main/java"
    # the jar as Maven's jar plugin lays it out: the pom and pom.properties under META-INF/maven
    meta=$BUILD/jar-meta
    rm -rf "$meta"
    mkdir -p "$meta/META-INF/maven/$GROUP/$ARTIFACT"
    cp "$HERE/pom.xml" "$meta/META-INF/maven/$GROUP/$ARTIFACT/pom.xml"
    printf 'groupId=%s\nartifactId=%s\nversion=%s\n' "$GROUP" "$ARTIFACT" "$VERSION" \
        > "$meta/META-INF/maven/$GROUP/$ARTIFACT/pom.properties"
    printf 'Implementation-Title: %s\nImplementation-Vendor-Id: %s\nImplementation-Version: %s\nAutomatic-Module-Name: io.sbexportd\n' \
        "$ARTIFACT" "$GROUP" "$VERSION" > "$BUILD/MANIFEST.MF"
    rm -f "$BUILD"/"$ARTIFACT"-*.jar
    jar --create --file "$JAR" --manifest "$BUILD/MANIFEST.MF" -C "$BUILD/classes" . -C "$meta" META-INF
}

case "$cmd" in
clean)
    rm -rf "$BUILD" "$HERE/target"
    ;;
compile)
    main
    echo "build.sh: $JAR ($GROUP:$ARTIFACT:$VERSION)"
    ;;
test)
    [ -f "$JUNIT" ] || { echo "build.sh: $JUNIT missing; run clients/java/install-deps.sh" >&2; exit 2; }
    main
    compile "$BUILD/test-classes" "$BUILD/classes:$CP:$JUNIT" "$HERE/src/test/java"
    "$PY" "$HERE/src/test/resources/make_reference.py" "$BUILD/testdata"
    "$PY" "$ROOT/tests/zoo_reference.py" "$ZOOREF"
    # shellcheck disable=SC2086
    java -Dsbexportd.testdata="$BUILD/testdata" -Dsbexportd.zoodata="$ZOOREF" -Dsbexportd.python="$PY" \
        -Dsbexportd.root="$ROOT" \
        -Dsbexportd.classpath="$BUILD/classes:$CP" \
        -jar "$JUNIT" --disable-banner --disable-ansi-colors --details=tree --details-theme=ascii --fail-if-no-tests \
        --class-path "$BUILD/classes:$BUILD/test-classes:$CP" \
        ${SBEXPORTD_JAVA_TESTS:---scan-class-path} \
        --reports-dir="$BUILD/test-reports"
    ;;
bench)
    main
    compile "$BUILD/bench-classes" "$BUILD/classes:$CP" "$HERE/bench"
    "$PY" "$HERE/src/test/resources/make_reference.py" "$BUILD/testdata"
    java -cp "$BUILD/classes:$BUILD/bench-classes:$CP" -Dsbexportd.testdata="$BUILD/testdata" \
        -Dsbexportd.python="$PY" -Dsbexportd.root="$ROOT" io.sbexportd.bench.Bench
    ;;
example)
    main
    model=${2:-$ROOT/examples/ppo2_CartPole-v1.pkl}
    java -cp "$JAR:$CP" io.sbexportd.Example --python "$PY" "$model"
    ;;
*)
    echo "usage: build.sh [compile|test|bench|example [MODEL]|clean]" >&2
    exit 2
    ;;
esac
