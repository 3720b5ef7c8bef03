from django.urls import path

from billing import api

urlpatterns = [
    path("credits", api.CreditsView.as_view(), name="credits"),
    path("credits/transactions", api.CreditTransactionListView.as_view(), name="credit-transactions"),
    path("billing/packs", api.CreditPackListView.as_view(), name="billing-packs"),
    path("billing/checkout", api.CheckoutView.as_view(), name="billing-checkout"),
    path("billing/purchases", api.PurchaseListView.as_view(), name="billing-purchases"),
]
