<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="2.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:hci="http://sap.com/it/"
	xmlns:main="https://main.com/"
    exclude-result-prefixes="hci">
 
    <xsl:import href="pd:GenericPartner:xsl_util:Binary"/>
 
    <xsl:output method="xml" encoding="UTF-8" indent="no" />
 
    <xsl:template match="/">
        <Message>
			<xsl:apply-templates/>    
        </Message>
    </xsl:template>
	
	<xsl:template match="Sender">
		<xsl:call-template name="set_property">
			<xsl:with-param name="property_name">SENDER_ID</xsl:with-param>
			<xsl:with-param name="property_value" select="."/>
		</xsl:call-template>
    </xsl:template>
	
    <xsl:template match="Receiver">
		<xsl:call-template name="set_property">
			<xsl:with-param name="property_name">RECEIVER_ID</xsl:with-param>
			<xsl:with-param name="property_value" select="."/>
		</xsl:call-template>
    </xsl:template>
	
	<xsl:template match="main:Body">
	    <Content><xsl:value-of select="."/></Content>
    </xsl:template>
	
	<xsl:template match="Currency">
	    <xsl:call-template name="transform_currency_code">
			<xsl:with-param name="sender_currency_code" select="."/>
		</xsl:call-template>
    </xsl:template>
	
</xsl:stylesheet>