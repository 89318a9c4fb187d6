FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt && useradd --create-home --uid 10001 app

COPY . .
# collectstatic needs settings but no database or secrets
RUN ENVIRONMENT=development python manage.py collectstatic --noinput --verbosity 0

USER app
EXPOSE 8000
CMD ["sh", "-c", "daphne -b 0.0.0.0 -p ${PORT:-8000} tradingplatform.asgi:application"]
