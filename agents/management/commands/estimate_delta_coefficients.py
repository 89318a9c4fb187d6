"""Estimate the minimum-variance delta's coefficients from a client's stored quote history, and
with --apply make them the agent's (the estimation is risk's: `risk.option_history`)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import tenant_context

from agents.parameters import ParameterError
from agents.selectors import agent_parameters_get
from agents.services.config import agent_parameters_update
from risk.option_history import DEFAULT_STEP_MINUTES, minimum_variance_estimate
from tenants.models import Client, Membership


class Command(BaseCommand):
    help = (
        "Estimate Hull & White's minimum-variance delta coefficients a, b, c for one underlying from "
        "the option quotes the book syncs stored (OPTION_HISTORY_DAYS are kept); print them with the "
        "number of observations and R^2, or why there are none. --apply sets the agent's "
        "minimum_variance.a/b/c through the parameter update (validated and audited)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--client", required=True, help="The client's id.")
        parser.add_argument("--underlying", required=True, help="The product, e.g. ES.")
        parser.add_argument("--days", type=int, default=20, help="How many days of history (default 20).")
        parser.add_argument("--step-minutes", type=int, default=DEFAULT_STEP_MINUTES,
                            help=f"The observations' interval: the last sync of each step counts "
                                 f"(default {DEFAULT_STEP_MINUTES}).")
        parser.add_argument("--apply", action="store_true", help="Set the agent's minimum_variance.a/b/c.")
        parser.add_argument("--actor", help="With --apply: who changes them (the client's owner or an operator), "
                                            "for the audit trail.")

    def handle(self, *args, **options) -> None:
        client = Client.objects.filter(client_id=options["client"]).first()
        if client is None:
            raise CommandError(f"No client {options['client']!r}.")
        if options["days"] <= 0:
            raise CommandError("--days must be a positive number of days.")
        if options["step_minutes"] <= 0:
            raise CommandError("--step-minutes must be a positive number of minutes.")
        underlying = options["underlying"].strip().upper()
        actor = options["actor"]
        if options["apply"]:
            if not actor:
                raise CommandError("--apply needs --actor <username> (the audit trail names who changed it).")
            user = get_user_model().objects.filter(username=actor).first()
            if user is None:
                raise CommandError(f"No user {actor!r}.")
            owner = Membership.objects.filter(user=user, client=client, role=Membership.Role.OWNER).exists()
            if not (owner or user.is_staff):
                raise CommandError(f"{actor!r} may not change {client.client_id}'s agent parameters "
                                   f"(its owner or an operator may).")
        with tenant_context(client):
            estimate = minimum_variance_estimate(underlying=underlying, days=options["days"],
                                                 step_minutes=options["step_minutes"])
            since = f"{estimate.since:%Y-%m-%d %H:%M} UTC"
            if estimate.coefficients is None:
                raise CommandError(f"No estimate for {underlying} since {since}: {estimate.reason}.")
            co = estimate.coefficients
            self.stdout.write(
                f"{underlying} since {since}: a={co.a:.6f} b={co.b:.6f} c={co.c:.6f} "
                f"n={estimate.observations} R2={estimate.r_squared:.4f}")
            if not options["apply"]:
                return
            agent_underlying = agent_parameters_get().underlying
            if agent_underlying != underlying:
                raise CommandError(f"The agent hedges {agent_underlying}, not {underlying}: nothing applied.")
            try:
                agent_parameters_update(client=client, actor=actor,
                                        changes={"minimum_variance": {"a": co.a, "b": co.b, "c": co.c}})
            except ParameterError as exc:
                raise CommandError(f"Not applied: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Applied to {client.client_id}'s agent as minimum_variance.a/b/c."))
