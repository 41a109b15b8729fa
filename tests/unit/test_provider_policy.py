"""The server's allowlist of endpoints and key variables for stored workflows."""

from __future__ import annotations

from app.workflows.providers.policy import ProviderPolicy, normalise_url


def test_urls_compare_without_case_default_port_or_trailing_slash() -> None:
    assert normalise_url("HTTPS://API.OpenAI.com:443/v1/") == "https://api.openai.com/v1"
    assert normalise_url("http://[::1]:11434/v1") == "http://[::1]:11434/v1"
    assert normalise_url("http://h:8080/v1") != normalise_url("http://h:8081/v1")


def test_defaults_allow_the_vendors_and_loopback_ollama_only() -> None:
    policy = ProviderPolicy.from_env({})
    for url in (
        "https://api.openai.com/v1/",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        "https://api.anthropic.com/v1/",
        "http://localhost:11434/v1",
    ):
        assert policy.refuse_base_url(url) is None, url
    for url in (
        "http://attacker.example/v1",
        "https://api.openai.com.attacker.example/v1",
        "https://api.openai.com/v1/../../evil",
        "http://169.254.169.254/latest",
        "http://10.0.0.5:11434/v1",
    ):
        why = policy.refuse_base_url(url)
        assert why is not None and "CA_ALLOWED_BASE_URLS" in why, url
    assert policy.refuse_key_env("OPENAI_API_KEY") is None
    assert "CA_ALLOWED_KEY_ENV" in (policy.refuse_key_env("AWS_SECRET_ACCESS_KEY") or "")


def test_the_servers_settings_add_to_the_allowlist() -> None:
    env = {
        "OPENAI_BASE_URL": "http://vllm.internal:8000/v1",
        "CA_ALLOWED_BASE_URLS": "http://proxy.internal/v1, https://llm.example.com/api/",
        "CA_ALLOWED_KEY_ENV": "TEAM_KEY",
    }
    policy = ProviderPolicy.from_env(env)
    assert policy.refuse_base_url("http://vllm.internal:8000/v1/") is None
    assert policy.refuse_base_url("http://proxy.internal/v1") is None
    assert policy.refuse_base_url("https://llm.example.com/api") is None
    assert policy.refuse_key_env("TEAM_KEY") is None


def test_the_servers_own_secrets_are_never_a_key_even_for_a_trusted_workflow() -> None:
    trusted = ProviderPolicy.from_env({"CA_ALLOWED_KEY_ENV": "CA_SECRET"}, trust_workflow=True)
    assert trusted.refuse_base_url("http://anything.example/v1") is None
    assert trusted.refuse_key_env("ANY_VARIABLE") is None
    for name in ("CA_SECRET", "ca_operator_tokens", "DATABASE_URL", "PGPASSWORD"):
        assert "server's own secrets" in (trusted.refuse_key_env(name) or ""), name


def _provider(name: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    from app.workflows.providers.openai_compat import OpenAICompatibleProvider

    return OpenAICompatibleProvider(name, timeout=1, policy=ProviderPolicy.from_env(env))


def test_a_vendors_key_goes_only_to_that_vendors_endpoint(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.workflows.providers.base import ProviderError

    monkeypatch.setenv("OPENAI_API_KEY", "sk-" + "k" * 30)
    openai = _provider("openai", {"CA_ALLOWED_BASE_URLS": "http://proxy.internal/v1"})
    refused = [
        {"base_url": "http://localhost:11434/v1"},  # allowed URL, but Ollama's, not OpenAI's
        {"base_url": "http://proxy.internal/v1"},  # allowed by the operator, still not OpenAI's
        {"api_key_env": "ANTHROPIC_API_KEY"},  # another vendor's key to OpenAI
        {"base_url": "http://localhost:11434/v1", "api_key_env": "OPENAI_API_KEY"},
    ]
    for settings in refused:
        try:
            openai._check_policy(settings)
        except ProviderError as exc:
            assert exc.kind == "NotAllowed", settings
        else:
            raise AssertionError(f"allowed: {settings}")
    openai._check_policy({"base_url": "https://api.openai.com/v1/"})
    openai._check_policy({})
    ollama = _provider("ollama", {})
    ollama._check_policy({"base_url": "http://127.0.0.1:11434/v1"})  # no key needed
    team = _provider(
        "openai",
        {"CA_ALLOWED_BASE_URLS": "http://proxy.internal/v1", "CA_ALLOWED_KEY_ENV": "TEAM_KEY"},
    )
    team._check_policy({"base_url": "http://proxy.internal/v1", "api_key_env": "TEAM_KEY"})
