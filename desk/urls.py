from django.urls import path

from desk import audit, chain, chat, orders, parameters, views

urlpatterns = [
    path("", views.ClientsView.as_view(), name="desk-home"),
    path("login", views.LoginView.as_view(), name="desk-login"),
    path("logout", views.LogoutView.as_view(), name="desk-logout"),
    path("desk/<str:client_id>/", views.BookView.as_view(), name="desk-book"),
    path("desk/<str:client_id>/proposals", views.ProposalsView.as_view(), name="desk-proposals"),
    path("desk/<str:client_id>/proposals/<str:proposal_id>/approve", views.ProposalApproveView.as_view(),
         name="desk-approve"),
    path("desk/<str:client_id>/proposals/<str:proposal_id>/reject", views.ProposalRejectView.as_view(),
         name="desk-reject"),
    path("desk/<str:client_id>/chat", chat.ChatPageView.as_view(), name="desk-chat"),
    path("desk/<str:client_id>/parameters", parameters.ParametersPageView.as_view(), name="desk-parameters"),
    path("desk/<str:client_id>/parameters/change", parameters.ParametersChangeView.as_view(),
         name="desk-parameters-change"),
    path("desk/<str:client_id>/mode", parameters.ModeView.as_view(), name="desk-mode"),
    path("desk/<str:client_id>/breaker/reset", parameters.BreakerResetView.as_view(), name="desk-breaker-reset"),
    path("desk/<str:client_id>/broker/test", parameters.BrokerTestView.as_view(), name="desk-broker-test"),
    path("desk/<str:client_id>/orders", orders.OrdersView.as_view(), name="desk-orders"),
    path("desk/<str:client_id>/orders/<str:client_order_id>/cancel", orders.OrderCancelView.as_view(),
         name="desk-order-cancel"),
    path("desk/<str:client_id>/chain", chain.ChainView.as_view(), name="desk-chain"),
    path("desk/<str:client_id>/audit", audit.AuditView.as_view(), name="desk-audit"),
    path("desk/<str:client_id>/audit.csv", audit.AuditCsvView.as_view(), name="desk-audit-csv"),
    path("desk/<str:client_id>/fragments/<str:name>", views.FragmentView.as_view(), name="desk-fragment"),
]
