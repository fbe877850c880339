"""Sample files for the import page: a few rows of each contract file that import together
as they are (a test imports them), to show a merchant's team the columns and the formats."""

from __future__ import annotations

SAMPLES: dict[str, str] = {
    "branches": "code,name\nMAIN,Main Street store\nEAST,East side store\n",
    "products": (
        "sku,name,product_type,brand,category,price\n"
        "PR-001,Sunset preroll 1g,preroll,Phat Panda,Flower,12.50\n"
        "ED-002,Mango gummies 10 pack,edible,Munchie,Edibles,18.00\n"
    ),
    "customers": (
        "external_id,first_name,last_name,email,phone,gender,birth_date,customer_type,"
        "tags,tier,joined_at,home_branch,email_opt_in,sms_opt_in,push_opt_in,"
        "points_balance,lifetime_points\n"
        "C-1001,Ana,Lopez,ana@example.com,+14165550101,female,1990-05-31,retail,"
        "vip;newsletter,Gold,2024-01-15T10:30:00,MAIN,true,true,false,120,560\n"
        "C-1002,Ben,Okafor,ben@example.com,,male,,medical,,Bronze,2024-03-02,EAST,"
        "false,false,false,0,40\n"
    ),
    "transactions": (
        "external_id,customer_external_id,occurred_at,total,kind,branch,points_earned,"
        "points_redeemed\n"
        "T-5001,C-1001,2024-06-01T14:05:00,43.00,purchase,MAIN,43,0\n"
        "T-5002,C-1002,2024-06-03 09:15,18.00,purchase,EAST,18,0\n"
        "T-5003,C-1001,2024-06-04T11:00:00-04:00,12.50,refund,MAIN,0,0\n"
    ),
    "items": (
        "transaction_external_id,sku,quantity,amount\n"
        "T-5001,PR-001,2,25.00\n"
        "T-5001,ED-002,1,18.00\n"
        "T-5002,ED-002,1,18.00\n"
    ),
    "redemptions": (
        "external_id,customer_external_id,reward,redeemed_at,points\n"
        "R-9001,C-1001,Free preroll,2024-06-10T16:20:00,100\n"
    ),
}
