#!/bin/sh
# The Java client's build and test dependencies, from Debian's packages (no Maven
# Central here): gson, msgpack-core, JUnit 5 (with junit-platform-console-standalone).
# Idempotent: does nothing when the jars are already installed.
set -eu
JARS=${SBEXPORTD_JARS:-/usr/share/java}
need=""
[ -f "$JARS/gson.jar" ] || need="$need libgoogle-gson-java"
[ -f "$JARS/msgpack-core.jar" ] || need="$need libmsgpack-java"
[ -f "$JARS/junit-platform-console-standalone.jar" ] || need="$need junit5"
command -v javac >/dev/null 2>&1 || need="$need openjdk-17-jdk-headless"
if [ -z "$need" ]; then
    echo "install-deps: Java dependencies present in $JARS"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "install-deps: apt-get install$need"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
