"""The docker files: the compose file is valid for the compose client and wires kgllm to Neo4j 5."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose``, whichever this machine has."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_wires_kgllm_to_neo4j():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    neo4j, kgllm = compose["services"]["neo4j"], compose["services"]["kgllm"]
    assert neo4j["image"] == "neo4j:5-community"
    assert {"7474:7474", "7687:7687"} <= set(neo4j["ports"])
    assert "NEO4J_AUTH" in neo4j["environment"] and "healthcheck" in neo4j
    assert any(v.endswith(":/data") for v in neo4j["volumes"])
    assert kgllm["environment"]["NEO4J_URI"] == "bolt://neo4j:7687"
    assert kgllm["build"]["dockerfile"] == "docker/Dockerfile"
    assert kgllm["depends_on"]["neo4j"]["condition"] == "service_healthy"


def test_dockerfiles_install_the_package():
    cpu = (DOCKER / "Dockerfile").read_text()
    gpu = (DOCKER / "Dockerfile.gpu").read_text()
    assert cpu.startswith("#") and "FROM python:3.11-slim" in cpu and 'pip install ".[' in cpu
    assert "FROM nvidia/cuda:" in gpu and 'pip install ".[gpu' in gpu
    for text in (cpu, gpu):
        copied = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
        for source in copied:  # every file the images copy is in the build context
            if source != "README.md":  # written at release time by the top-level docs
                assert (DOCKER.parent / source).exists(), source


def test_compose_config_validates():
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose client (`docker compose` plugin or `docker-compose`) on this machine")
    done = subprocess.run([*command, "-f", str(DOCKER / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, env={**os.environ, "NEO4J_AUTH": "neo4j/test-password"})
    assert done.returncode == 0, done.stderr


def test_entrypoint_splits_neo4j_auth(tmp_path):
    fake = tmp_path / "kgllm"  # stands in for the installed command: prints what it was given
    fake.write_text('#!/bin/sh\necho "$NEO4J_USER|$NEO4J_PASSWORD|$*"\n')
    fake.chmod(0o755)
    done = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "stats"], capture_output=True, text=True,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin", "NEO4J_AUTH": "neo4j/s3cret/x",
                               "KGLLM_STORE": "neo4j"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "neo4j|s3cret/x|--store neo4j stats"
