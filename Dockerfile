FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt && useradd --create-home --uid 10001 app

COPY . .
# collectstatic needs settings (so secrets) but no database: throwaway ones, never kept in the image
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    JWT_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    FERNET_KEYS="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
    ADMIN_API_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
    ENVIRONMENT=development python manage.py collectstatic --noinput --verbosity 0

USER app
EXPOSE 8000
CMD ["sh", "-c", "daphne -b 0.0.0.0 -p ${PORT:-8000} tradingplatform.asgi:application"]
