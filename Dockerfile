FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PORT=8000
WORKDIR /app

COPY requirements.txt .
# The app user owns only its state directory (first operator's credentials, beat's heartbeat),
# never the code.
RUN pip install -r requirements.txt \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /var/lib/tradingplatform && chown app:app /var/lib/tradingplatform

COPY . .
# collectstatic needs settings (so secrets) but no database: throwaway ones, never kept in the image
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    JWT_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    FERNET_KEYS="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
    ADMIN_API_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
    ENVIRONMENT=development python manage.py collectstatic --noinput --verbosity 0

USER app
ENV BEAT_HEARTBEAT_FILE=/var/lib/tradingplatform/beat-heartbeat
EXPOSE 8000
# Exec form, no shell: the entry command execs the role's server, which is then PID 1 and gets
# SIGTERM itself (daphne closes its websockets cleanly). Roles: web (default), worker, beat, migrate.
ENTRYPOINT ["python", "-m", "tradingplatform.entrypoint"]
CMD ["web"]
# Reads $PORT itself (a port other than 8000 keeps working).
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=6 \
    CMD ["python", "-m", "tradingplatform.entrypoint", "health", "web"]
