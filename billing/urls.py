from django.urls import path

from billing import api

urlpatterns = [
    path("credits", api.CreditsView.as_view(), name="credits"),
    path("credits/transactions", api.CreditTransactionListView.as_view(), name="credit-transactions"),
]
