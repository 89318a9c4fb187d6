from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Trading agents"

    def ready(self) -> None:
        # The risk limits are stored in the agent's parameters; risk reads them through this
        # function so that it never imports the agents app (see risk.selectors).
        from agents.selectors import agent_delta_models, agent_risk_limits_stored
        from risk.selectors import delta_models_source_register, risk_limits_source_register

        risk_limits_source_register(agent_risk_limits_stored)
        # Likewise the delta model chosen for the agent's underlying (agents.parameters.delta_model).
        delta_models_source_register(agent_delta_models)
        # A proposal shows its order as the broker reports it: every book sync that finds an
        # order changed (a resting hedge filled) tells the proposals, without risk importing agents.
        from agents.services.execution import proposals_follow_orders
        from risk.services import order_listener_register

        order_listener_register(proposals_follow_orders)
